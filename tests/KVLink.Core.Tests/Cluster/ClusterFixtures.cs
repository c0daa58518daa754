using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Caching.StackExchangeRedis;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Cluster;

/// <summary>
/// A started 3+3 cluster with a StackExchange.Redis connection and Microsoft's RedisCache (IDistributedCache) on it.
/// Derived per server: <see cref="RedisServerClusterFixture"/> and <see cref="GarnetClusterFixture"/>.
/// </summary>
public abstract class ClusterFixture : IAsyncLifetime
{
    private RedisCache? _redisCache;
    private int _victims;

    /// <summary>The next master a failover test may kill (0, 1, 2).</summary>
    public int NextVictim() => Interlocked.Increment(ref _victims) - 1;

    protected abstract string Backend { get; }

    public LocalCluster Cluster { get; private set; } = null!;

    public ConnectionMultiplexer Connection { get; private set; } = null!;

    /// <summary>Microsoft's Redis IDistributedCache with a cluster configuration (every node's endpoint).</summary>
    public IDistributedCache DistributedCache => _redisCache!;

    public async Task InitializeAsync()
    {
        // A fixture of a backend whose tests are skipped starts nothing.
        if (Backend == "redis-server" && RedisServerFactAttribute.Reason is not null) return;
        Cluster = await LocalCluster.StartAsync(Backend);
        Connection = await ConnectionMultiplexer.ConnectAsync(Cluster.ConnectionString);
        _redisCache = new RedisCache(Options.Create(new RedisCacheOptions { Configuration = Cluster.ConnectionString, InstanceName = "dc:" }));
    }

    public async Task DisposeAsync()
    {
        _redisCache?.Dispose();
        if (Connection is not null) await Connection.DisposeAsync();
        if (Cluster is not null) await Cluster.DisposeAsync();
    }
}

public sealed class RedisServerClusterFixture : ClusterFixture
{
    protected override string Backend => "redis-server";
}

public sealed class GarnetClusterFixture : ClusterFixture
{
    protected override string Backend => "garnet";
}

[CollectionDefinition(Name)]
public sealed class RedisServerClusterCollection : ICollectionFixture<RedisServerClusterFixture>
{
    public const string Name = "redis-server cluster";
}

[CollectionDefinition(Name)]
public sealed class GarnetClusterCollection : ICollectionFixture<GarnetClusterFixture>
{
    public const string Name = "Garnet cluster";
}

/// <summary>
/// A test that needs Debian's redis-server: skipped, with the reason, only when no redis-server is found. When
/// KVLINK_REQUIRE_REDIS_SERVER=1 (set by .ci/run) it is never skipped, so a CI machine where the install failed
/// reports these tests as failed rather than hiding them.
/// </summary>
public sealed class RedisServerFactAttribute : FactAttribute
{
    public RedisServerFactAttribute()
    {
        if (Reason is { } reason) Skip = reason;
    }

    /// <summary>Why redis-server tests are skipped here; null when they run.</summary>
    public static string? Reason =>
        LocalCluster.RedisServerPath is null && Environment.GetEnvironmentVariable("KVLINK_REQUIRE_REDIS_SERVER") != "1"
            ? "redis-server not found (KVLINK_REDIS_SERVER, PATH, /usr/bin): install it (apt-get install -y redis-server) or run .ci/run, which does"
            : null;
}
