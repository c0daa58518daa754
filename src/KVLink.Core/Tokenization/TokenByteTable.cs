using System.Text;

namespace KVLink.Core.Tokenization;

/// <summary>Id to exact bytes for every token, including special tokens (UTF-8 of their name).</summary>
/// <remarks>Microsoft.ML.Tokenizers does not expose the bytes behind a token id, and its decoders
/// drop or replace partial UTF-8; streaming needs the raw bytes, so we keep our own table.</remarks>
internal sealed class TokenByteTable
{
    /// <summary>Largest id accepted from a file: real vocabularies stay far below it, and the table
    /// is indexed by id, so a hostile id must not make us allocate gigabytes.</summary>
    public const int MaxId = (1 << 24) - 1;

    private readonly byte[]?[] _bytes;
    private readonly Dictionary<int, byte[]>? _sparse;
    private readonly int _count;

    public TokenByteTable(IReadOnlyDictionary<int, byte[]> ordinary, IReadOnlyDictionary<string, int> added)
    {
        int maxId = -1;
        foreach (int id in ordinary.Keys) maxId = Math.Max(maxId, id);
        foreach (int id in added.Values) maxId = Math.Max(maxId, id);
        _count = maxId + 1;
        // Real vocabularies are dense. A file with a few tokens at huge ids gets a dictionary, so a small
        // hostile file cannot make us allocate an id-indexed table far larger than itself.
        bool dense = (long)_count <= 4L * (ordinary.Count + added.Count) + 1024;
        _bytes = dense ? new byte[]?[_count] : [];
        if (!dense) _sparse = new Dictionary<int, byte[]>(ordinary.Count + added.Count);
        foreach (var (id, bytes) in ordinary)
            Set(id, bytes);
        // An added token wins over a vocabulary entry with the same id: it is what the model was fed.
        foreach (var (name, id) in added)
            Set(id, Encoding.UTF8.GetBytes(name));
    }

    private void Set(int id, byte[] bytes)
    {
        if (_sparse is not null) _sparse[id] = bytes;
        else _bytes[id] = bytes;
    }

    /// <summary>True when a token has this id.</summary>
    public bool Contains(int id) =>
        _sparse is not null ? _sparse.ContainsKey(id) : (uint)id < (uint)_bytes.Length && _bytes[id] is not null;

    /// <summary>Max id + 1.</summary>
    public int Count => _count;

    public ReadOnlySpan<byte> this[int id] =>
        _sparse is not null
            ? _sparse.TryGetValue(id, out var s) ? s : throw new ArgumentOutOfRangeException(nameof(id), id, "No token has this id.")
            : (uint)id < (uint)_bytes.Length && _bytes[id] is { } b
                ? b
                : throw new ArgumentOutOfRangeException(nameof(id), id, "No token has this id.");

    /// <summary>UTF-8 text of the concatenated token bytes; invalid sequences become U+FFFD.</summary>
    public string Decode(IEnumerable<int> ids)
    {
        var buffer = new List<byte>();
        foreach (int id in ids)
            buffer.AddRange(this[id]);
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(buffer));
    }
}
