using System.Globalization;
using KVLink.Core.Engine;
using KVLink.Core.Prompting;
using Microsoft.Extensions.Options;
using KVLink.Core.Model;

namespace KVLink.Core.Hosting;

/// <summary>
/// Validates <see cref="KvLinkOptions"/> registered through <c>AddKvLink</c>: every failure at once, each named by its
/// configuration path (the bound section's path, e.g. <c>KvLink:Generation:MaxNewTokens</c>; <c>KvLinkOptions</c> or
/// <c>KvLinkOptions['name']</c> for options configured in code).
/// </summary>
internal sealed class KvLinkOptionsValidator(IEnumerable<KvLinkRegistration> registrations) : IValidateOptions<KvLinkOptions>
{
    public ValidateOptionsResult Validate(string? name, KvLinkOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string key = string.IsNullOrEmpty(name) ? Options.DefaultName : name;
        var registration = registrations.LastOrDefault(r => (r.Name ?? Options.DefaultName) == key);
        string prefix = registration?.ConfigurationPath
            ?? (string.IsNullOrEmpty(name) ? "KvLinkOptions" : $"KvLinkOptions['{name}']");
        var failures = CheckAll(options).Select(f => f.Path.Length > 0 ? $"{prefix}:{f.Path} {f.Rule}" : $"{prefix}: {f.Rule}").ToList();
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>Every invalid setting of <paramref name="o"/>: its path below the options (':'-separated, as in configuration) and the rule it breaks.</summary>
    internal static IEnumerable<(string Path, string Rule)> Check(KvLinkOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.ModelPath))
            yield return ("ModelPath", "is required: set it to a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json).");
        else if (!Directory.Exists(o.ModelPath))
            yield return ("ModelPath", $"'{o.ModelPath}' does not exist or is not a folder.");
        else if (!File.Exists(Path.Combine(o.ModelPath, "config.json")))
            yield return ("ModelPath", $"'{o.ModelPath}' has no config.json: it is not a Hugging Face checkpoint folder.");

        if (o.LinkTokens < 0) yield return ("LinkTokens", $"must be >= 0 (is {o.LinkTokens}).");
        else if (Fails(() => (o.PromptFormat ?? KvLinkLlama3Format.Published).ValidateLinkTokens(o.LinkTokens, 1)) is { } linkIds)
            yield return ("LinkTokens", $"does not fit the prompt format: {linkIds}");
        if (o.PrecomputeSlots < 1) yield return ("PrecomputeSlots", $"must be >= 1 (is {o.PrecomputeSlots}).");
        if (!Enum.IsDefined(o.SlotPolicy)) yield return ("SlotPolicy", $"'{o.SlotPolicy}' is not a slot policy: use {string.Join(" or ", Enum.GetNames<SlotPolicy>())}.");
        if (o.MaxRunningSequences < 1) yield return ("MaxRunningSequences", $"must be >= 1 (is {o.MaxRunningSequences}).");
        if (o.MaxLiveCacheBytes < 1) yield return ("MaxLiveCacheBytes", $"must be >= 1, long.MaxValue for no limit (is {o.MaxLiveCacheBytes}).");
        if (o.MaxStepTokens < 1) yield return ("MaxStepTokens", $"must be >= 1 (is {o.MaxStepTokens}).");
        if (o.PrecomputeMaxWait < TimeSpan.Zero) yield return ("PrecomputeMaxWait", $"must be >= 0 (is {o.PrecomputeMaxWait.ToString("c", CultureInfo.InvariantCulture)}).");
        if (!Enum.IsDefined(o.Mode)) yield return ("Mode", $"'{o.Mode}' is not a context mode: use {string.Join(" or ", Enum.GetNames<ContextMode>())}.");
        if (!Enum.IsDefined(o.DType)) yield return ("DType", $"'{o.DType}' is not a dtype: use {string.Join(", ", Enum.GetNames<ComputeDType>())}.");
        if (string.IsNullOrWhiteSpace(o.Tenant)) yield return ("Tenant", "must not be empty.");
        if (o.Device is not null && !KvLinkDevices.IsValid(o.Device)) yield return ("Device", $"'{o.Device}' is not a device name: use \"cpu\", \"cuda\" or \"cuda:N\".");

        if (o.Generation is not { } g) yield return ("Generation", "is required.");
        else
        {
            if (g.MaxNewTokens <= 0) yield return ("Generation:MaxNewTokens", $"must be positive (is {g.MaxNewTokens}).");
            if (!(g.Temperature >= 0) || float.IsInfinity(g.Temperature)) yield return ("Generation:Temperature", $"must be a finite number >= 0 (is {Invariant(g.Temperature)}).");
            if (g.TopK < 0) yield return ("Generation:TopK", $"must be >= 0, 0 disabling it (is {g.TopK}).");
            if (!(g.TopP > 0 && g.TopP <= 1)) yield return ("Generation:TopP", $"must be in (0, 1] (is {Invariant(g.TopP)}).");
        }

        if (o.Compression is not { } c) yield return ("Compression", "is required.");
        else
        {
            if (!(c.KeepFraction > 0 && c.KeepFraction <= 1)) yield return ("Compression:KeepFraction", $"must be in (0, 1] (is {Invariant(c.KeepFraction)}).");
            if (c.Window < 1) yield return ("Compression:Window", $"must be >= 1 (is {c.Window}).");
            if (c.Context < 0) yield return ("Compression:Context", $"must be >= 0 (is {c.Context}).");
        }
    }

    /// <summary><see cref="Check"/>, plus whatever <see cref="KvLinkOptions.Validate"/> still rejects when no rule above did (a check added to the engine later).</summary>
    internal static List<(string Path, string Rule)> CheckAll(KvLinkOptions o)
    {
        var failures = Check(o).ToList();
        if (failures.All(f => f.Path == "ModelPath") && Fails(o.Validate) is { } other) failures.Add(("", other));
        return failures;
    }

    private static string? Fails(Action check)
    {
        try { check(); return null; }
        catch (ArgumentException e)
        {
            string message = e.Message;
            int cut = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (cut < 0) cut = message.IndexOf("\nActual value", StringComparison.Ordinal);
            return cut >= 0 ? message[..cut].TrimEnd() : message;
        }
    }

    private static string Invariant(double value) => value.ToString(CultureInfo.InvariantCulture);
}
