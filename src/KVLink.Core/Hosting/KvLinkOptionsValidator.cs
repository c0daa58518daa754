using KVLink.Core.Engine;
using Microsoft.Extensions.Options;

namespace KVLink.Core.Hosting;

/// <summary>Validates <see cref="KvLinkOptions"/> registered through <c>AddKvLink</c>; every message names the option.</summary>
internal sealed class KvLinkOptionsValidator : IValidateOptions<KvLinkOptions>
{
    public ValidateOptionsResult Validate(string? name, KvLinkOptions options)
    {
        string who = string.IsNullOrEmpty(name) ? "KvLinkOptions" : $"KvLinkOptions['{name}']";
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(options.ModelPath))
            failures.Add($"{who}.ModelPath is required: set it to a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json).");
        else if (!Directory.Exists(options.ModelPath))
            failures.Add($"{who}.ModelPath '{options.ModelPath}' does not exist or is not a folder.");
        else if (!File.Exists(Path.Combine(options.ModelPath, "config.json")))
            failures.Add($"{who}.ModelPath '{options.ModelPath}' has no config.json: it is not a Hugging Face checkpoint folder.");

        try { options.Validate(); }
        catch (ArgumentException e)
        {
            string option = e.ParamName is { Length: > 0 } p ? $"{who}.{p}" : who;
            string message = e.Message;
            int cut = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (cut >= 0) message = message[..cut];
            failures.Add($"{option}: {message}");
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
