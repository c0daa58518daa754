using System.Net;
using System.Net.Sockets;
using Garnet;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Caching.StackExchangeRedis;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Caching;

/// <summary>A real Redis-protocol server (Microsoft Garnet, in process) on a free loopback port, and a client connection to it.</summary>
public sealed class GarnetFixture : IDisposable
{
    private readonly GarnetServer _server;
    private readonly RedisCache _redisCache;

    public GarnetFixture()
    {
        int port = FreePort();
        _server = new GarnetServer(["--bind", "127.0.0.1", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--memory", "256m", "--index", "8m"]);
        _server.Start();
        ConnectionString = $"127.0.0.1:{port},abortConnect=false,connectTimeout=5000,syncTimeout=20000,asyncTimeout=20000";
        Connection = ConnectionMultiplexer.Connect(ConnectionString);
        // The stock IDistributedCache for Redis (Microsoft.Extensions.Caching.StackExchangeRedis), with its own connection.
        _redisCache = new RedisCache(Options.Create(new RedisCacheOptions { Configuration = ConnectionString, InstanceName = "dc:" }));
    }

    public string ConnectionString { get; }

    public ConnectionMultiplexer Connection { get; }

    /// <summary>Microsoft's Redis <c>IDistributedCache</c> pointed at this server.</summary>
    public IDistributedCache DistributedCache => _redisCache;

    /// <summary>A loopback port free right now.</summary>
    internal static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    public void Dispose()
    {
        _redisCache.Dispose();
        Connection.Dispose();
        _server.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class GarnetCollection : ICollectionFixture<GarnetFixture>
{
    public const string Name = "Garnet";
}
