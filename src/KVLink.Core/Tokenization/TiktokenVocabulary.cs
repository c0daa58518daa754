using System.Text;

namespace KVLink.Core.Tokenization;

/// <summary>Reads and writes tiktoken BPE files: one <c>base64(token bytes) rank</c> pair per line.
/// Llama 3's <c>original/tokenizer.model</c> is such a file; ranks double as token ids. The compact
/// variant bundled with Microsoft.ML.Tokenizers (header line, bare base64 tokens) is accepted too.</summary>
internal static class TiktokenVocabulary
{
    /// <summary>Parses the ranks of a tiktoken file.</summary>
    /// <param name="content">The whole file.</param>
    /// <param name="source">Named in error messages.</param>
    /// <exception cref="InvalidDataException">A line is not <c>base64 rank</c>, a rank repeats, or a byte has no token.</exception>
    public static Dictionary<int, byte[]> Parse(byte[] content, string source)
    {
        var ranks = new Dictionary<int, byte[]>();
        using var reader = new StreamReader(new MemoryStream(content), Encoding.UTF8);
        int lineNumber = 0, nextRank = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (line.Length == 0)
                continue;
            // Microsoft.ML.Tokenizers' bundled files start with a "Capacity: N" sizing hint.
            if (lineNumber == 1 && line.StartsWith("Capacity:", StringComparison.Ordinal))
                continue;
            // That compact form also omits ranks: a bare base64 token takes the rank after the previous one.
            int space = line.IndexOf(' ');
            int rank = nextRank;
            if (space == 0 || space > 0 && (!int.TryParse(line.AsSpan(space + 1), out rank) || rank < 0 || rank > TokenByteTable.MaxId))
                throw new InvalidDataException($"{source}: line {lineNumber} is not '<base64> <rank>'.");
            byte[] bytes;
            try { bytes = Convert.FromBase64String(space > 0 ? line[..space] : line); }
            catch (FormatException) { throw new InvalidDataException($"{source}: line {lineNumber} has invalid base64."); }
            if (rank > TokenByteTable.MaxId)
                throw new InvalidDataException($"{source}: too many tokens (line {lineNumber}).");
            if (!ranks.TryAdd(rank, bytes))
                throw new InvalidDataException($"{source}: rank {rank} appears twice (line {lineNumber}).");
            nextRank = rank + 1;
        }
        if (ranks.Count == 0)
            throw new InvalidDataException($"{source}: no tokens found.");
        if (ByteCoverage.FindGap(ranks.Values) is { } gap)
            throw new InvalidDataException($"{source}: {gap}.");
        return ranks;
    }

    /// <summary>Serialises ranks in tiktoken format, so TiktokenTokenizer can be built from any byte vocabulary.</summary>
    public static MemoryStream Write(IReadOnlyDictionary<int, byte[]> ranks)
    {
        var text = new StringBuilder();
        foreach (var (rank, bytes) in ranks.OrderBy(p => p.Key))
            text.Append(Convert.ToBase64String(bytes)).Append(' ').Append(rank).Append('\n');
        return new MemoryStream(Encoding.UTF8.GetBytes(text.ToString()));
    }
}
