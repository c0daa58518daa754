using System.Diagnostics;
using System.Text;
using KVLink.Core.Tokenization;
using KVLink.TestSupport;
using PreTokenizer = Microsoft.ML.Tokenizers.PreTokenizer;
using RegexPreTokenizer = Microsoft.ML.Tokenizers.RegexPreTokenizer;

namespace KVLink.Benchmarks;

/// <summary>
/// <c>--tokenizer-throughput</c>: encode throughput of a Llama-3-sized tokenizer (cl100k_base ranks, Llama 3 specials)
/// on a long mixed text, and the hand-written pre-tokenizer scanner against the Regex it replaces, interleaved in one
/// process so load from other work affects both alike. Measured here rather than asserted in a test: timings on a
/// shared machine are not a pass/fail signal.
/// </summary>
internal static class TokenizerThroughput
{
    public static void Run(Action<string> log)
    {
        string s = LongMixedText.Create();
        int bytes = Encoding.UTF8.GetByteCount(s);
        LlamaTokenizer tok;
        using (var ranks = Cl100kTiktoken.Open())
            tok = LlamaTokenizer.FromTiktoken(ranks, Llama3SpecialTokens.Create(128000));
        tok.Encode(s[..10_000]); // warm-up

        var clock = Stopwatch.StartNew();
        long tokens = 0;
        int rounds = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(2) || rounds < 2)
        {
            tokens += tok.Encode(s).Count;
            rounds++;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        log($"encode: {rounds * (double)bytes / seconds / 1e6:F2} MB/s UTF-8, {tokens / seconds / 1e6:F2} M tokens/s ({rounds} x {s.Length} chars)");

        var specials = Llama3SpecialTokens.Create();
        PreTokenizer scanner = new Llama3PreTokenizer(specials);
        PreTokenizer regex = new RegexPreTokenizer(PreTokenizerPatterns.Compile(PreTokenizerPatterns.Llama3), specials);
        var times = new double[2];
        const int Rounds = 6;
        for (int round = 0; round < Rounds; round++)
        {
            foreach (var (which, pre) in new[] { (0, scanner), (1, regex) })
            {
                var c = Stopwatch.StartNew();
                _ = pre.PreTokenize(s).Count();
                if (round > 0) times[which] += c.Elapsed.TotalSeconds; // round 0 warms up
            }
        }
        double mb = (Rounds - 1) * (double)bytes / 1e6;
        log($"pre-tokenize: scanner {mb / times[0]:F1} MB/s, Regex {mb / times[1]:F1} MB/s (scanner/Regex time {times[0] / times[1]:F2})");
    }
}
