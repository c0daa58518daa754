using System.Text;
using System.Text.Json;
using KVLink.Core.Prompting;

namespace KVLink.Training;

/// <summary>
/// A deterministic, seeded synthetic RAG corpus about fictional people, cities, countries and companies. Names come from a
/// fixed lexicon (<see cref="Lexicon"/>), but every question draws its own facts — who was born where, who works for whom,
/// which city lies in which country — so no fact holds beyond its own documents and a model can only answer by reading them.
/// Single-hop: "Where was X born?", "Which company does X work for?". Two-hop: "In which country was X born?" (the person's
/// document names the city, the city's document its country) and "In which city is the company that X works for based?".
/// Each question has 5-10 shuffled documents: the supporting ones plus distractors about other entities. Training questions
/// carry follow-up questions about the other facts of their documents (a multi-turn conversation), so one training sequence
/// teaches several look-ups; evaluation questions are drawn from a separate generator stream.
/// </summary>
public sealed class SyntheticRagCorpus
{
    private SyntheticRagCorpus(IReadOnlyList<SyntheticRagQuestion> train, IReadOnlyList<SyntheticRagQuestion> eval)
    {
        Train = train;
        Eval = eval;
    }

    /// <summary>Training questions (both kinds, interleaved).</summary>
    public IReadOnlyList<SyntheticRagQuestion> Train { get; }

    /// <summary>Evaluation questions (both kinds, interleaved), without follow-ups.</summary>
    public IReadOnlyList<SyntheticRagQuestion> Eval { get; }

    /// <summary>Every name the corpus uses (people, cities, companies, countries), fixed for all seeds; a tokenizer trained for the corpus should keep each as one token.</summary>
    public static SyntheticLexicon Lexicon { get; } = SyntheticLexicon.Create();

    /// <summary>The question templates and the words of the documents, for training a tokenizer.</summary>
    public static IEnumerable<string> TemplateTexts()
    {
        var l = Lexicon;
        yield return PersonText(l.People[0], l.Cities[0], l.Companies[0]);
        yield return CityText(l.Cities[0], l.Countries[0]);
        yield return CompanyText(l.Companies[0], l.Cities[0]);
        yield return BornText(l.People[0], l.Cities[0]) + " " + WorksText(l.People[0], l.Companies[0]);
        foreach (var (q, _) in Questions(l.People[0], l.Cities[0], l.Companies[0], l.Countries[0])) yield return q;
    }

    /// <summary>Generates the corpus.</summary>
    public static SyntheticRagCorpus Generate(SyntheticRagCorpusOptions? options = null)
    {
        options ??= new SyntheticRagCorpusOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.TrainQuestionsPerKind);
        ArgumentOutOfRangeException.ThrowIfNegative(options.EvalQuestionsPerKind);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxFollowUps);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MinDocuments, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxDocuments, options.MinDocuments);
        // Separate streams: the evaluation split does not change when the training split grows.
        var trainRandom = new TrainingRandom(options.Seed);
        var evalRandom = new TrainingRandom(options.Seed ^ 0x5EED_E7A1_0000_0001UL);
        return new SyntheticRagCorpus(
            Split(trainRandom, options, options.TrainQuestionsPerKind, options.MaxFollowUps),
            Split(evalRandom, options, options.EvalQuestionsPerKind, 0));
    }

    /// <summary>
    /// Writes <c>train.jsonl</c> and <c>eval.jsonl</c> into <paramref name="folder"/>: QA lines plus <c>kind</c>, <c>supporting</c>
    /// and <c>follow_ups</c>. In <c>eval.jsonl</c> the <c>answer</c> is the gold answer; in <c>train.jsonl</c> it is the trained response.
    /// </summary>
    public void WriteJsonl(string folder)
    {
        Directory.CreateDirectory(folder);
        Write(Path.Combine(folder, "train.jsonl"), Train, gold: false);
        Write(Path.Combine(folder, "eval.jsonl"), Eval, gold: true);
    }

    private static void Write(string path, IEnumerable<SyntheticRagQuestion> questions, bool gold)
    {
        using var writer = new StreamWriter(path, append: false, new UTF8Encoding(false)) { NewLine = "\n" };
        foreach (var q in questions)
        {
            writer.WriteLine(JsonSerializer.Serialize(new
            {
                documents = q.Sample.Documents.Select(d => new { title = d.Title ?? "", text = d.Text }),
                question = q.Sample.Question,
                answer = gold ? q.Gold : q.Sample.Answer,
                kind = q.Kind == SyntheticQuestionKind.SingleHop ? "single_hop" : "two_hop",
                supporting = q.SupportingSlots,
                follow_ups = (q.Sample.FollowUps ?? []).Select(f => new { question = f.Question, answer = f.Answer }),
            }));
        }
    }

    private static List<SyntheticRagQuestion> Split(TrainingRandom r, SyntheticRagCorpusOptions o, int perKind, int followUps)
    {
        var result = new List<SyntheticRagQuestion>(2 * perKind);
        for (int i = 0; i < perKind; i++)
        {
            result.Add(new World(r, o).Question(r, SyntheticQuestionKind.SingleHop, followUps));
            result.Add(new World(r, o).Question(r, SyntheticQuestionKind.TwoHop, followUps));
        }
        return result;
    }

    // Documents state each fact as the very sentence a response restates, so answering is copying a sentence's end.
    private static string PersonText(string p, string city, string company) => $"{BornText(p, city)} {WorksText(p, company)}";

    private static string BornText(string p, string city) => $"{p} was born in {city}.";

    private static string WorksText(string p, string company) => $"{p} works for {company}.";

    private static string CityText(string city, string country) => $"{city} is a city in {country}.";

    private static string CompanyText(string company, string city) => $"{company} is a company based in {city}.";

    private static IEnumerable<(string Question, string Kind)> Questions(string p, string city, string company, string country)
    {
        yield return ($"Where was {p} born?", "born");
        yield return ($"Which company does {p} work for?", "works");
        yield return ($"In which country was {p} born?", "country");
        yield return ($"In which city is the company that {p} works for based?", "company-city");
        yield return ($"Which country is {city} in?", "city");
        yield return ($"Where is {company} based?", "company");
    }

    /// <summary>One question's private world: the entities of its documents and their random facts.</summary>
    private sealed class World
    {
        private readonly List<(string Name, int City, int Company)> _people = [];
        private readonly List<(int City, int Country)> _cities = [];
        private readonly List<(int Company, int City)> _companies = [];
        private readonly List<KvLinkDocument> _docs = [];
        private readonly int _count;

        public World(TrainingRandom r, SyntheticRagCorpusOptions o) => _count = o.MinDocuments + r.Next(o.MaxDocuments - o.MinDocuments + 1);

        public SyntheticRagQuestion Question(TrainingRandom r, SyntheticQuestionKind kind, int maxFollowUps)
        {
            var l = Lexicon;
            var used = new HashSet<string>(StringComparer.Ordinal);
            string person = Draw(r, l.People, used);
            int city = Array.IndexOf(l.Cities, Draw(r, l.Cities, used));
            int company = Array.IndexOf(l.Companies, Draw(r, l.Companies, used));
            AddPerson(person, city, company);
            string question, response, gold;
            if (kind == SyntheticQuestionKind.SingleHop)
            {
                bool born = r.Next(2) == 0;
                question = born ? $"Where was {person} born?" : $"Which company does {person} work for?";
                gold = born ? l.Cities[city] : l.Companies[company];
                response = born ? BornText(person, gold) : WorksText(person, gold);
            }
            else if (r.Next(2) == 0)
            {
                int country = r.Next(l.Countries.Length);
                AddCity(city, country);
                question = $"In which country was {person} born?";
                gold = l.Countries[country];
                response = $"{BornText(person, l.Cities[city])} {CityText(l.Cities[city], gold)}";
            }
            else
            {
                int based = Array.IndexOf(l.Cities, Draw(r, l.Cities, used));
                AddCompany(company, based);
                question = $"In which city is the company that {person} works for based?";
                gold = l.Cities[based];
                response = $"{WorksText(person, l.Companies[company])} {CompanyText(l.Companies[company], gold)}";
            }
            int gold0 = _docs.Count;
            while (_docs.Count < _count)
            {
                // Distractors about other entities; they may share cities or companies with the gold documents but never a title.
                switch (r.Next(3))
                {
                    case 0: AddPerson(Draw(r, l.People, used), r.Next(l.Cities.Length), r.Next(l.Companies.Length)); break;
                    case 1: AddCity(Array.IndexOf(l.Cities, Draw(r, l.Cities, used)), r.Next(l.Countries.Length)); break;
                    default: AddCompany(Array.IndexOf(l.Companies, Draw(r, l.Companies, used)), r.Next(l.Cities.Length)); break;
                }
            }
            // Fisher-Yates shuffle, tracking where the gold documents land.
            var order = Enumerable.Range(0, _docs.Count).ToArray();
            for (int i = order.Length - 1; i > 0; i--)
            {
                int j = r.Next(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
            int[] supporting = [.. Enumerable.Range(0, gold0).Select(g => Array.IndexOf(order, g))];
            var followUps = maxFollowUps == 0 ? null : FollowUps(r, question, maxFollowUps);
            var sample = new QaSample([.. order.Select(k => _docs[k])], question, response, followUps);
            return new SyntheticRagQuestion(sample, kind, supporting, gold);
        }

        private List<QaTurn> FollowUps(TrainingRandom r, string asked, int max)
        {
            var l = Lexicon;
            var turns = new List<QaTurn>();
            foreach (var (p, c, m) in _people)
            {
                turns.Add(new($"Where was {p} born?", BornText(p, l.Cities[c])));
                turns.Add(new($"Which company does {p} work for?", WorksText(p, l.Companies[m])));
                var cityDoc = _cities.FindIndex(x => x.City == c);
                if (cityDoc >= 0) turns.Add(new($"In which country was {p} born?", $"{BornText(p, l.Cities[c])} {CityText(l.Cities[c], l.Countries[_cities[cityDoc].Country])}"));
                var companyDoc = _companies.FindIndex(x => x.Company == m);
                if (companyDoc >= 0) turns.Add(new($"In which city is the company that {p} works for based?", $"{WorksText(p, l.Companies[m])} {CompanyText(l.Companies[m], l.Cities[_companies[companyDoc].City])}"));
            }
            foreach (var (c, country) in _cities) turns.Add(new($"Which country is {l.Cities[c]} in?", CityText(l.Cities[c], l.Countries[country])));
            foreach (var (m, c) in _companies) turns.Add(new($"Where is {l.Companies[m]} based?", CompanyText(l.Companies[m], l.Cities[c])));
            turns.RemoveAll(t => t.Question == asked);
            for (int i = turns.Count - 1; i > 0; i--)
            {
                int j = r.Next(i + 1);
                (turns[i], turns[j]) = (turns[j], turns[i]);
            }
            return turns.Count > max ? turns.GetRange(0, max) : turns;
        }

        private void AddPerson(string name, int city, int company)
        {
            _people.Add((name, city, company));
            var l = Lexicon;
            _docs.Add(new(PersonText(name, l.Cities[city], l.Companies[company]), name));
        }

        private void AddCity(int city, int country)
        {
            _cities.Add((city, country));
            _docs.Add(new(CityText(Lexicon.Cities[city], Lexicon.Countries[country]), Lexicon.Cities[city]));
        }

        private void AddCompany(int company, int city)
        {
            _companies.Add((company, city));
            _docs.Add(new(CompanyText(Lexicon.Companies[company], Lexicon.Cities[city]), Lexicon.Companies[company]));
        }

        private static string Draw(TrainingRandom r, string[] pool, HashSet<string> used)
        {
            while (true)
            {
                string name = pool[r.Next(pool.Length)];
                if (used.Add(name)) return name;
            }
        }
    }
}
