namespace KVLink.Core.Tests.Reliability;

/// <summary>Tests that read process-wide counters (live tensors, RSS) run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "Serial (process-wide counters)";
}
