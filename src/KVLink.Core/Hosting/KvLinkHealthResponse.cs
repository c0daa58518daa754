using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace KVLink.Core.Hosting;

/// <summary>The JSON writer of <see cref="KvLinkServiceCollectionExtensions.WriteKvLinkJsonAsync"/>.</summary>
internal static class KvLinkHealthResponse
{
    /// <summary>The content type of what <see cref="WriteJsonAsync"/> writes.</summary>
    public const string ContentType = "application/json; charset=utf-8";

    /// <summary>Writes <paramref name="report"/> to <paramref name="stream"/> as one JSON object (UTF-8).</summary>
    public static async Task WriteJsonAsync(Stream stream, HealthReport report, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(report);
        await using var json = new Utf8JsonWriter(stream);
        json.WriteStartObject();
        json.WriteString("status", report.Status.ToString());
        json.WriteNumber("duration_ms", Math.Round(report.TotalDuration.TotalMilliseconds, 3));
        json.WriteStartObject("checks");
        foreach (var (name, entry) in report.Entries)
        {
            json.WriteStartObject(name);
            json.WriteString("status", entry.Status.ToString());
            if (entry.Description is { } description) json.WriteString("description", description);
            json.WriteNumber("duration_ms", Math.Round(entry.Duration.TotalMilliseconds, 3));
            if (entry.Tags.Any())
            {
                json.WriteStartArray("tags");
                foreach (string tag in entry.Tags) json.WriteStringValue(tag);
                json.WriteEndArray();
            }
            json.WriteStartObject("data");
            foreach (var (key, value) in entry.Data)
            {
                json.WritePropertyName(key);
                WriteValue(json, value);
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        json.WriteEndObject();
        json.WriteEndObject();
        await json.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Numbers, booleans and strings as themselves, lists as arrays; anything else as its invariant text (no reflection-based serialization).</summary>
    private static void WriteValue(Utf8JsonWriter json, object? value)
    {
        switch (value)
        {
            case null: json.WriteNullValue(); break;
            case bool b: json.WriteBooleanValue(b); break;
            case int or long or short or byte or uint or ulong or ushort or sbyte: json.WriteNumberValue(Convert.ToDecimal(value, CultureInfo.InvariantCulture)); break;
            case double d when double.IsFinite(d): json.WriteNumberValue(d); break;
            case float f when float.IsFinite(f): json.WriteNumberValue(f); break;
            case decimal m: json.WriteNumberValue(m); break;
            case string s: json.WriteStringValue(s); break;
            case TimeSpan t: json.WriteNumberValue(Math.Round(t.TotalMilliseconds, 3)); break;
            case System.Collections.IEnumerable list:
                json.WriteStartArray();
                foreach (object? item in list) WriteValue(json, item);
                json.WriteEndArray();
                break;
            case IFormattable formattable: json.WriteStringValue(formattable.ToString(null, CultureInfo.InvariantCulture)); break;
            default: json.WriteStringValue(value.ToString()); break;
        }
    }
}
