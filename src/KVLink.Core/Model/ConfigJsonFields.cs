using System.Text.Json;

namespace KVLink.Core.Model;

/// <summary>
/// Typed, bounded reads of one JSON object of <c>config.json</c>. A field that is absent or <c>null</c> is "not set";
/// a field that is present must be of the right JSON kind, finite and in range, or the read fails naming the file
/// and the field: a present but unusable value is never replaced by a default.
/// </summary>
internal readonly struct ConfigJsonFields(JsonElement obj, string source, string prefix = "")
{
    public int? Int(string name, long min, long max)
    {
        if (!TryGet(name, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number) throw Bad(name, $"must be an integer, got {Kind(v)}");
        if (!v.TryGetInt64(out long x)) throw Bad(name, $"must be an integer, got {Raw(v)}");
        if (x < min || x > max) throw Bad(name, $"must be between {min} and {max}, got {x}");
        return (int)x;
    }

    public int RequiredInt(string name, long min, long max) => Int(name, min, max) ?? throw Bad(name, "is missing");

    /// <summary>A finite number in [min, max] (or (min, max] with <paramref name="minExclusive"/>).</summary>
    public double? Double(string name, double min, double max, bool minExclusive = false)
    {
        if (!TryGet(name, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number) throw Bad(name, $"must be a number, got {Kind(v)}");
        // 1e999 parses as infinity on some paths and fails on others; either way it is not a usable number.
        if (!v.TryGetDouble(out double x) || !double.IsFinite(x)) throw Bad(name, $"must be a finite number, got {Raw(v)}");
        if (x > max || (minExclusive ? x <= min : x < min))
            throw Bad(name, $"must be {(minExclusive ? "above" : "at least")} {min} and at most {max}, got {x:R}");
        return x;
    }

    public bool? Bool(string name)
    {
        if (!TryGet(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(name, $"must be true or false, got {Kind(v)}"),
        };
    }

    public string? String(string name)
    {
        if (!TryGet(name, out var v)) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Bad(name, $"must be a string, got {Kind(v)}");
    }

    /// <summary>A single id or a list of ids, each in [0, max]; absent or null is an empty list.</summary>
    public IReadOnlyList<int> Ids(string name, int max)
    {
        if (!TryGet(name, out var v)) return [];
        if (v.ValueKind == JsonValueKind.Number) return [Int(name, 0, max)!.Value];
        if (v.ValueKind != JsonValueKind.Array) throw Bad(name, $"must be an integer or a list of integers, got {Kind(v)}");
        var ids = new List<int>();
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out long x) || x < 0 || x > max)
                throw Bad(name, $"every id must be an integer between 0 and {max}, got {Raw(e)}");
            ids.Add((int)x);
        }
        return ids;
    }

    public InvalidDataException Bad(string name, string what) => new($"{source}: '{prefix}{name}' {what}.");

    private bool TryGet(string name, out JsonElement value) =>
        obj.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null;

    private static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => $"the string {Quote(v.GetString()!)}",
        JsonValueKind.True or JsonValueKind.False => Raw(v),
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => Raw(v),
    };

    private static string Raw(JsonElement v) => Cut(v.GetRawText());

    private static string Quote(string s) => "\"" + Cut(s) + "\"";

    // Values are shown in messages, so cut: a hostile file should not fill the log.
    private static string Cut(string s) => s.Length > 40 ? s[..40] + "..." : s;
}
