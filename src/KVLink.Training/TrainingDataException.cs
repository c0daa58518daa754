namespace KVLink.Training;

/// <summary>A training data file has a line that is not valid JSON or lacks a required field; the message names the file and line.</summary>
public sealed class TrainingDataException : FormatException
{
    /// <summary>Creates the exception for line <paramref name="line"/> (1-based) of <paramref name="file"/>.</summary>
    public TrainingDataException(string file, int line, string message, Exception? inner = null)
        : base($"{file}:{line}: {message}", inner)
    {
        File = file;
        Line = line;
    }

    /// <summary>The file that was being read.</summary>
    public string File { get; }

    /// <summary>The 1-based line number of the bad record.</summary>
    public int Line { get; }
}
