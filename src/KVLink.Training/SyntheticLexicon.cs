namespace KVLink.Training;

/// <summary>The fixed names of the synthetic corpus: fictional, pronounceable, unique across all four lists.</summary>
/// <param name="People">Person names.</param>
/// <param name="Cities">City names.</param>
/// <param name="Companies">Company names.</param>
/// <param name="Countries">Country names.</param>
public sealed record SyntheticLexicon(string[] People, string[] Cities, string[] Companies, string[] Countries)
{
    private static readonly string[] Onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "tr", "sh", "th"];
    private static readonly string[] Vowels = ["a", "e", "i", "o", "u", "ae", "ou"];
    private static readonly string[] Codas = ["n", "r", "l", "s", "x", "m"];

    /// <summary>Every name, in list order.</summary>
    public IEnumerable<string> All => People.Concat(Cities).Concat(Companies).Concat(Countries);

    internal static SyntheticLexicon Create()
    {
        // A fixed seed, independent of the corpus seed: every corpus shares one lexicon, so one tokenizer fits them all.
        var r = new TrainingRandom(0x1E_C0DE);
        var names = new HashSet<string>(StringComparer.Ordinal);
        string[] Make(int count, Func<string> make) => [.. Enumerable.Range(0, count).Select(_ =>
        {
            while (true)
            {
                string n = make();
                if (names.Add(n)) return n;
            }
        })];
        string Syllable() => Onsets[r.Next(Onsets.Length)] + Vowels[r.Next(Vowels.Length)];
        string Cap(string s) => char.ToUpperInvariant(s[0]) + s[1..];
        var people = Make(300, () => Cap(Syllable() + Syllable() + Codas[r.Next(Codas.Length)]));
        var cities = Make(100, () => Cap(Syllable() + Syllable()) + new[] { "port", "vale", "holm", "burg", "mere", "ford" }[r.Next(6)]);
        var companies = Make(60, () => Cap(Syllable() + Codas[r.Next(Codas.Length)]) + new[] { "corp", "tek", "works", "labs" }[r.Next(4)]);
        var countries = Make(24, () => Cap(Syllable() + Syllable()) + new[] { "ia", "land", "stan" }[r.Next(3)]);
        return new SyntheticLexicon(people, cities, companies, countries);
    }
}
