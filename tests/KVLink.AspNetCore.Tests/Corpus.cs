using System.Net.Http.Json;
using System.Text.Json;
using KVLink.Training;

namespace KVLink.AspNetCore.Tests;

/// <summary>A held-out multi-turn sample of the synthetic corpus the demo model was trained on (seed 999 was not used in training).</summary>
internal static class Corpus
{
    public static readonly SyntheticRagQuestion Sample = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions
        { Seed = 999, TrainQuestionsPerKind = 1, EvalQuestionsPerKind = 0, MaxFollowUps = 2 }).Train[0];

    /// <summary>Posts the sample's documents through <c>POST /documents</c>; their ids in order.</summary>
    public static async Task<string[]> PostDocumentsAsync(HttpClient http)
    {
        var ids = new List<string>();
        foreach (var d in Sample.Sample.Documents)
        {
            var r = await http.PostAsJsonAsync("/documents", new { text = d.Text, title = d.Title });
            r.EnsureSuccessStatusCode();
            ids.Add((await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!);
        }
        return [.. ids];
    }
}
