using System.Net;
using System.Net.Sockets;
using Garnet;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Caching;

/// <summary>A real Redis-protocol server (Microsoft Garnet, in process) on a free loopback port, and a client connection to it.</summary>
public sealed class GarnetFixture : IDisposable
{
    private readonly GarnetServer _server;

    public GarnetFixture()
    {
        int port = FreePort();
        _server = new GarnetServer(["--bind", "127.0.0.1", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--memory", "256m", "--index", "8m"]);
        _server.Start();
        Connection = ConnectionMultiplexer.Connect($"127.0.0.1:{port},abortConnect=false,connectTimeout=5000,syncTimeout=20000,asyncTimeout=20000");
    }

    public ConnectionMultiplexer Connection { get; }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    public void Dispose()
    {
        Connection.Dispose();
        _server.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class GarnetCollection : ICollectionFixture<GarnetFixture>
{
    public const string Name = "Garnet";
}
