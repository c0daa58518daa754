// KVLink.Train: makes the demo model, fine-tunes any Llama checkpoint with the KVLink recipe, and measures accuracy.
// The command line is parsed by System.CommandLine: `--help` on the program or any command lists its options,
// and a missing or malformed value is reported with a non-zero exit code before any work starts.
using System.CommandLine;
using System.CommandLine.Parsing;
using KVLink.Train;

// The commands and their options are in TrainCli.cs. Ctrl+C and SIGTERM are StopSignals', not System.CommandLine's
// (which would end the process two seconds after the signal, before a long step can checkpoint).
using var signals = new StopSignals(Console.Error);
return await TrainCli.BuildRootCommand().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }, signals.Token);

/// <summary>The options a command was given. Each accessor returns the caller's default when the option was not on the command line.</summary>
internal sealed class Options(ParseResult result, CancellationToken cancellation = default)
{
    /// <summary>
    /// Signalled by Ctrl+C or SIGTERM: training phases checkpoint and stop. A command that reads it stops by itself, so
    /// from then on a signal no longer ends the process at once (<see cref="StopSignals.Watch"/>).
    /// </summary>
    public CancellationToken Cancellation
    {
        get
        {
            StopSignals.Current?.Watch();
            return cancellation;
        }
    }

    private OptionResult? Given(string name) =>
        result.GetResult("--" + name) is OptionResult { Implicit: false } r ? r : null;

    public string? Get(string name) => Given(name)?.GetValueOrDefault<object?>() switch
    {
        null => null,
        int[] list => string.Join(',', list),
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        var v => v.ToString(),
    };

    public string Require(string name) => Get(name) ?? throw new ArgumentException($"--{name} is required.");
    public int Int(string name, int fallback) => Given(name) is { } r ? r.GetValueOrDefault<int>() : fallback;
    public double Double(string name, double fallback) => Given(name) is { } r ? r.GetValueOrDefault<double>() : fallback;
    public bool Flag(string name) => Given(name) is { } r && r.GetValueOrDefault<bool>();
    public int[]? Ints(string name) => Given(name)?.GetValueOrDefault<int[]>();
}
