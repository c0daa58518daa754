using System.Text.Json;

namespace KVLink.AspNetCore;

/// <summary>
/// Typed reads of one JSON object's fields, each failing with a 400 that names the field and the type it needs: a
/// string where a number belongs, a fraction where an integer does, or a number too large for its type is the caller's
/// mistake, never the server's. A null or missing field reads as null.
/// </summary>
internal readonly struct JsonFields(JsonElement obj)
{
    public bool Has(string name) => Get(name) is not null;

    public string? String(string name, string? param = null) => Get(name) is not { } v ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw Wrong(param ?? name, "a string");

    public bool? Boolean(string name, string? param = null) => Get(name) is not { } v ? null
        : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Wrong(param ?? name, "true or false");

    public double? Number(string name) => Get(name) is not { } v ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d) ? d : throw Wrong(name, "a number");

    /// <summary>An integer in 64 bits: 1.5, 1e30 and "10" are refused (1e3 and 10.0 are integers written otherwise, and accepted).</summary>
    public long? Integer(string name) => Get(name) is not { } v ? null
        : v.ValueKind == JsonValueKind.Number && (v.TryGetInt64(out long l) || (v.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < 9e15 && (l = (long)d) == d))
            ? l : throw Wrong(name, "an integer (64-bit)");

    public JsonElement? Object(string name) => Get(name) is not { } v ? null
        : v.ValueKind == JsonValueKind.Object ? v : throw Wrong(name, "an object");

    public JsonElement? Array(string name) => Get(name) is not { } v ? null
        : v.ValueKind == JsonValueKind.Array ? v : throw Wrong(name, "an array");

    /// <summary>An array of strings (a missing field is empty).</summary>
    public IReadOnlyList<string> Strings(string name)
    {
        if (Array(name) is not { } a) return [];
        var list = new List<string>(a.GetArrayLength());
        foreach (var item in a.EnumerateArray())
            list.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw Wrong(name, "an array of strings"));
        return list;
    }

    private JsonElement? Get(string name) =>
        obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static OpenAIRequestException Wrong(string param, string expected) =>
        OpenAIRequestException.Invalid(param, $"'{param}' must be {expected}.");
}
