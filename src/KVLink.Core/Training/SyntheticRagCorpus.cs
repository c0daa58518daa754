using System.Text;
using System.Text.Json;
using KVLink.Core.Prompting;

namespace KVLink.Core.Training;

/// <summary>The kind of a synthetic question.</summary>
public enum SyntheticQuestionKind
{
    /// <summary>Answered by one document (a person's birthplace or employer).</summary>
    SingleHop,

    /// <summary>Needs two documents (a person's document names a city or company whose own document holds the answer).</summary>
    TwoHop,
}

/// <summary>A generated question: the QA sample, its kind, and the prompt slots of the documents that support the answer.</summary>
/// <param name="Sample">The documents (gold and distractors, shuffled), question and answer.</param>
/// <param name="Kind">Single- or two-hop.</param>
/// <param name="SupportingSlots">Slots (0-based) of the documents needed to answer, in reasoning order.</param>
public sealed record SyntheticRagQuestion(QaSample Sample, SyntheticQuestionKind Kind, IReadOnlyList<int> SupportingSlots);

/// <summary>Sizes and seed of a synthetic corpus.</summary>
public sealed record SyntheticRagCorpusOptions
{
    /// <summary>Seed; the same options always give the same corpus.</summary>
    public ulong Seed { get; init; } = 1234;

    /// <summary>Training questions of each kind.</summary>
    public int TrainQuestionsPerKind { get; init; } = 2000;

    /// <summary>Evaluation questions of each kind.</summary>
    public int EvalQuestionsPerKind { get; init; } = 500;

    /// <summary>Fewest documents per question.</summary>
    public int MinDocuments { get; init; } = 5;

    /// <summary>Most documents per question.</summary>
    public int MaxDocuments { get; init; } = 10;
}

/// <summary>
/// A deterministic, seeded synthetic RAG corpus about fictional people, cities, countries and companies, so that
/// answers can only come from the documents. Each person yields one single-hop question ("Where was X born?" or
/// "Which company does X work for?") and one two-hop question ("In which country was X born?" via the city's
/// document, or "In which city is the company X works for based?" via the company's document). Every question
/// carries 5-10 shuffled documents: the supporting ones plus distractors about other entities. Train and eval
/// use disjoint worlds (no shared names).
/// </summary>
public sealed class SyntheticRagCorpus
{
    private static readonly string[] Onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "tr", "sh", "th"];
    private static readonly string[] Vowels = ["a", "e", "i", "o", "u", "ae", "ou", "y"];
    private static readonly string[] CitySuffixes = ["port", "vale", "holm", "burg", "mere", "ford", "wick", "stad"];
    private static readonly string[] CompanySuffixes = ["Industries", "Labs", "Works", "Systems", "Foundry", "Trading"];
    private static readonly string[] Products = ["lanterns", "clocks", "rope", "glass beads", "copper pipes", "maps", "violins", "kites"];
    private static readonly string[] Landmarks = ["a tall lighthouse", "an old stone bridge", "a salt market", "a floating garden", "a glass tower", "a red canal"];
    private static readonly string[] Hobbies = ["chess", "sailing", "pottery", "archery", "beekeeping", "painting"];

    private SyntheticRagCorpus(IReadOnlyList<SyntheticRagQuestion> train, IReadOnlyList<SyntheticRagQuestion> eval)
    {
        Train = train;
        Eval = eval;
    }

    /// <summary>Training questions (both kinds, interleaved).</summary>
    public IReadOnlyList<SyntheticRagQuestion> Train { get; }

    /// <summary>Evaluation questions (both kinds, interleaved).</summary>
    public IReadOnlyList<SyntheticRagQuestion> Eval { get; }

    /// <summary>Generates the corpus.</summary>
    public static SyntheticRagCorpus Generate(SyntheticRagCorpusOptions? options = null)
    {
        options ??= new SyntheticRagCorpusOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.TrainQuestionsPerKind);
        ArgumentOutOfRangeException.ThrowIfNegative(options.EvalQuestionsPerKind);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MinDocuments, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxDocuments, options.MinDocuments);
        var random = new TrainingRandom(options.Seed);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var train = new World(random, names, options.TrainQuestionsPerKind).Questions(random, options);
        var eval = new World(random, names, options.EvalQuestionsPerKind).Questions(random, options);
        return new SyntheticRagCorpus(train, eval);
    }

    /// <summary>Writes <c>train.jsonl</c> and <c>eval.jsonl</c> (QA format, plus <c>kind</c> and <c>supporting</c> fields) into <paramref name="folder"/>.</summary>
    public void WriteJsonl(string folder)
    {
        Directory.CreateDirectory(folder);
        Write(Path.Combine(folder, "train.jsonl"), Train);
        Write(Path.Combine(folder, "eval.jsonl"), Eval);
    }

    private static void Write(string path, IEnumerable<SyntheticRagQuestion> questions)
    {
        using var writer = new StreamWriter(path, append: false, new UTF8Encoding(false)) { NewLine = "\n" };
        foreach (var q in questions)
        {
            writer.WriteLine(JsonSerializer.Serialize(new
            {
                documents = q.Sample.Documents.Select(d => new { title = d.Title ?? "", text = d.Text }),
                question = q.Sample.Question,
                answer = q.Sample.Answer,
                kind = q.Kind == SyntheticQuestionKind.SingleHop ? "single_hop" : "two_hop",
                supporting = q.SupportingSlots,
            }));
        }
    }

    private sealed record Person(string Name, int City, int Company, string Hobby);
    private sealed record City(string Name, int Country, string Landmark);
    private sealed record Company(string Name, int City, string Product);

    private sealed class World
    {
        private readonly string[] _countries;
        private readonly City[] _cities;
        private readonly Company[] _companies;
        private readonly Person[] _people;

        public World(TrainingRandom r, HashSet<string> names, int people)
        {
            int cities = Math.Max(6, people / 4), companies = Math.Max(6, people / 4), countries = Math.Max(4, cities / 8);
            _countries = [.. Enumerable.Range(0, countries).Select(_ => Unique(r, names, () => Capital(Word(r, 2)) + "ia"))];
            _cities = [.. Enumerable.Range(0, cities).Select(_ => new City(
                Unique(r, names, () => Capital(Word(r, 2)) + Pick(r, CitySuffixes)), r.Next(countries), Pick(r, Landmarks)))];
            _companies = [.. Enumerable.Range(0, companies).Select(_ => new Company(
                Unique(r, names, () => Capital(Word(r, 2)) + " " + Pick(r, CompanySuffixes)), r.Next(cities), Pick(r, Products)))];
            _people = [.. Enumerable.Range(0, people).Select(_ => new Person(
                Unique(r, names, () => Capital(Word(r, 2)) + " " + Capital(Word(r, 3))), r.Next(cities), r.Next(companies), Pick(r, Hobbies)))];
        }

        public List<SyntheticRagQuestion> Questions(TrainingRandom r, SyntheticRagCorpusOptions o)
        {
            var result = new List<SyntheticRagQuestion>(2 * _people.Length);
            for (int i = 0; i < _people.Length; i++)
            {
                var p = _people[i];
                var personDoc = PersonDoc(p);
                if (r.Next(2) == 0)
                    result.Add(Make(r, o, SyntheticQuestionKind.SingleHop, [personDoc], $"Where was {p.Name} born?", _cities[p.City].Name, i, -1, -1));
                else
                    result.Add(Make(r, o, SyntheticQuestionKind.SingleHop, [personDoc], $"Which company does {p.Name} work for?", _companies[p.Company].Name, i, -1, -1));
                // The company route only when its city is not the birthplace (else the person's document alone answers it).
                if (r.Next(2) == 0 || _companies[p.Company].City == p.City)
                {
                    var city = _cities[p.City];
                    result.Add(Make(r, o, SyntheticQuestionKind.TwoHop, [personDoc, CityDoc(city)],
                        $"In which country was {p.Name} born?", _countries[city.Country], i, p.City, -1));
                }
                else
                {
                    var company = _companies[p.Company];
                    result.Add(Make(r, o, SyntheticQuestionKind.TwoHop, [personDoc, CompanyDoc(company)],
                        $"In which city is the company that {p.Name} works for based?", _cities[company.City].Name, i, -1, p.Company));
                }
            }
            return result;
        }

        private SyntheticRagQuestion Make(TrainingRandom r, SyntheticRagCorpusOptions o, SyntheticQuestionKind kind,
            KvLinkDocument[] gold, string question, string answer, int person, int city, int company)
        {
            int count = o.MinDocuments + r.Next(o.MaxDocuments - o.MinDocuments + 1);
            var docs = new List<KvLinkDocument>(gold);
            var used = new HashSet<string>(gold.Select(d => d.Title!), StringComparer.Ordinal);
            while (docs.Count < count)
            {
                // Distractors: other people, cities and companies of the same world (never the question's own entities).
                KvLinkDocument d = r.Next(3) switch
                {
                    0 => PersonDoc(_people[r.Next(_people.Length)]),
                    1 => CityDoc(_cities[r.Next(_cities.Length)]),
                    _ => CompanyDoc(_companies[r.Next(_companies.Length)]),
                };
                if (d.Title == _people[person].Name || (city >= 0 && d.Title == _cities[city].Name) || (company >= 0 && d.Title == _companies[company].Name)) continue;
                if (used.Add(d.Title!)) docs.Add(d);
            }
            // Fisher-Yates shuffle, tracking where the gold documents land.
            var order = Enumerable.Range(0, docs.Count).ToArray();
            for (int i = order.Length - 1; i > 0; i--)
            {
                int j = r.Next(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
            var shuffled = order.Select(k => docs[k]).ToList();
            int[] supporting = [.. Enumerable.Range(0, gold.Length).Select(g => Array.IndexOf(order, g))];
            return new SyntheticRagQuestion(new QaSample(shuffled, question, answer), kind, supporting);
        }

        private KvLinkDocument PersonDoc(Person p) => new(
            $"{p.Name} was born in {_cities[p.City].Name}. {p.Name} works for {_companies[p.Company].Name} and enjoys {p.Hobby}.", p.Name);

        private KvLinkDocument CityDoc(City c) => new($"{c.Name} is a city in {_countries[c.Country]}. It is known for {c.Landmark}.", c.Name);

        private KvLinkDocument CompanyDoc(Company c) => new($"{c.Name} is a company based in {_cities[c.City].Name}. It makes {c.Product}.", c.Name);
    }

    private static string Word(TrainingRandom r, int syllables)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < syllables; i++) sb.Append(Pick(r, Onsets)).Append(Pick(r, Vowels));
        return sb.ToString();
    }

    private static string Capital(string s) => char.ToUpperInvariant(s[0]) + s[1..];

    private static string Pick(TrainingRandom r, string[] items) => items[r.Next(items.Length)];

    private static string Unique(TrainingRandom r, HashSet<string> names, Func<string> make)
    {
        for (int attempt = 0; ; attempt++)
        {
            string name = make();
            if (attempt > 50) name += " " + Capital(Word(r, 1)) + attempt.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (names.Add(name)) return name;
        }
    }
}
