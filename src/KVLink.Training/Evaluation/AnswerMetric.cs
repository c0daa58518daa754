using System.Text;

namespace KVLink.Training.Evaluation;

/// <summary>
/// The accuracy metric of the KVLink paper: a response is correct when any gold answer, SQuAD-normalised
/// (lower-case, punctuation removed, articles a/an/the removed, whitespace collapsed), is a substring of the normalised response.
/// </summary>
public static class AnswerMetric
{
    /// <summary>SQuAD normalisation.</summary>
    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var sb = new StringBuilder(text.Length);
        foreach (char c in text.ToLowerInvariant())
            if (!char.IsPunctuation(c) && !char.IsSymbol(c)) sb.Append(c);
        var words = sb.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .Where(w => w is not ("a" or "an" or "the"));
        return string.Join(' ', words);
    }

    /// <summary>True when a normalised gold answer occurs in the normalised response.</summary>
    public static bool IsCorrect(string response, IEnumerable<string> answers)
    {
        ArgumentNullException.ThrowIfNull(answers);
        string r = Normalize(response);
        return answers.Select(Normalize).Any(a => a.Length > 0 && r.Contains(a, StringComparison.Ordinal));
    }
}
