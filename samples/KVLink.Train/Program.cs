// KVLink.Train: makes the demo model, fine-tunes any Llama checkpoint with the KVLink recipe, and measures accuracy.
using System.Globalization;
using KVLink.Train;

var options = Options.Parse(args.Skip(1));
switch (args.FirstOrDefault())
{
    case "demo":
        await Demo.RunAsync(options);
        break;
    case "accuracy":
        await AccuracyCommand.RunAsync(options, options.Get("models") ?? Path.Combine(Demo.RepoRoot(), "models"));
        break;
    case "control":
        Demo.RunControl(options);
        break;
    case "sanity":
        Sanity.Run(options);
        break;
    case "diag":
        Diag.Run(options);
        break;
    case "compression":
        await CompressionCommand.RunAsync(options);
        break;
    case "eval":
        await AccuracyCommand.EvalAsync(options);
        break;
    default:
        Console.WriteLine("""
            usage: dotnet run -c Release --project samples/KVLink.Train -- <command> [options]
              demo      [--out models] [--full-steps N] [--link-steps N] [--batch N] [--no-eval]
                        retrain both demo models from scratch, then measure the accuracy table into docs/accuracy.md
              accuracy  [--models DIR] [--per-kind 500] [--max-new-tokens 24]
                        measure the accuracy table of the demo models into docs/accuracy.md
              compression [--model DIR] [--per-kind 250] [--links 5]
                        accuracy / cache bytes / TTFT of compressed documents (self-information vs random drop, float32 vs int8) into docs/compression.md
              control   --work DIR [--link-steps N]
                        only the full-attention control phase of a `demo` work folder (the equal-budget baseline)
              diag      --model DIR [--n 3]      top predictions at every response token of a few held-out questions
              sanity    [--steps 300]            does the trainer learn in-context copying (loss falls to ~3 when it does)
              eval      --model DIR --data FILE.jsonl [--links 0,1,5] [--limit N] [--max-new-tokens 32]
                        accuracy of any checkpoint (e.g. Shiyu-Lab/Llama1B-KVLink5) on synthetic, NQ- or HotpotQA-style JSONL
            """);
        return args.Length == 0 ? 0 : 2;
}
return 0;

/// <summary>--name value pairs.</summary>
public sealed class Options(Dictionary<string, string> values)
{
    public static Options Parse(IEnumerable<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        string? key = null;
        foreach (var a in args)
        {
            if (a.StartsWith("--", StringComparison.Ordinal)) { key = a[2..]; values[key] = "true"; }
            else if (key is not null) { values[key] = a; key = null; }
            else throw new ArgumentException($"Unexpected argument '{a}'.");
        }
        return new Options(values);
    }

    public string? Get(string name) => values.GetValueOrDefault(name);
    public string Require(string name) => Get(name) ?? throw new ArgumentException($"--{name} is required.");
    public int Int(string name, int fallback) => Get(name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
    public double Double(string name, double fallback) => Get(name) is { } v ? double.Parse(v, CultureInfo.InvariantCulture) : fallback;
}
