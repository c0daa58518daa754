using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace KVLink.Core.Tests.Cluster;

/// <summary>A minimal RESP2 client for cluster administration (one connection per call), independent of StackExchange.Redis.</summary>
internal static class Resp
{
    public static async Task<object?> CallAsync(int port, params string[] args)
    {
        using var client = new TcpClient();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await client.ConnectAsync("127.0.0.1", port, cts.Token);
        var stream = client.GetStream();
        var request = new StringBuilder().Append('*').Append(args.Length).Append("\r\n");
        foreach (var a in args) request.Append('$').Append(Encoding.UTF8.GetByteCount(a)).Append("\r\n").Append(a).Append("\r\n");
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()), cts.Token);
        using var reader = new BufferedStream(stream);
        return await Task.Run(() => Read(reader), cts.Token);
    }

    public static async Task<string> TextAsync(int port, params string[] args) => (await CallAsync(port, args))?.ToString() ?? "";

    private static object? Read(Stream s)
    {
        string line = Line(s);
        switch (line[0])
        {
            case '+': return line[1..];
            case '-': throw new InvalidOperationException("server error: " + line[1..]);
            case ':': return long.Parse(line[1..], CultureInfo.InvariantCulture);
            case '$':
                int n = int.Parse(line[1..], CultureInfo.InvariantCulture);
                if (n < 0) return null;
                var buffer = new byte[n + 2];
                s.ReadExactly(buffer);
                return Encoding.UTF8.GetString(buffer, 0, n);
            case '*':
                int count = int.Parse(line[1..], CultureInfo.InvariantCulture);
                if (count < 0) return null;
                var items = new object?[count];
                for (int i = 0; i < count; i++) items[i] = Read(s);
                return items;
            default: throw new InvalidOperationException("unexpected reply: " + line);
        }
    }

    private static string Line(Stream s)
    {
        var bytes = new List<byte>();
        while (true)
        {
            int b = s.ReadByte();
            if (b < 0) throw new EndOfStreamException("connection closed");
            if (b == '\n' && bytes.Count > 0 && bytes[^1] == '\r') return Encoding.UTF8.GetString(bytes.ToArray(), 0, bytes.Count - 1);
            bytes.Add((byte)b);
        }
    }
}
