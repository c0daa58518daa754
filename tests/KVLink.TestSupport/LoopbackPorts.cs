using System.Net;
using System.Net.Sockets;

namespace KVLink.TestSupport;

/// <summary>Free TCP ports on 127.0.0.1 for servers the tests and benchmarks start (never another address).</summary>
internal static class LoopbackPorts
{
    /// <summary>Two distinct free ports (a Redis node's client port and its cluster bus port).</summary>
    public static (int Port, int BusPort) FreePair()
    {
        var a = new TcpListener(IPAddress.Loopback, 0);
        var b = new TcpListener(IPAddress.Loopback, 0);
        a.Start(); b.Start();
        var ports = (((IPEndPoint)a.LocalEndpoint).Port, ((IPEndPoint)b.LocalEndpoint).Port);
        a.Stop(); b.Stop();
        return ports;
    }
}
