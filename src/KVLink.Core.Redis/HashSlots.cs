using System.Globalization;

namespace KVLink.Core.Redis;

/// <summary>
/// Redis Cluster hash slots (CRC16-XMODEM of the key's hash tag, modulo 16384), and for every slot a short tag
/// that hashes to it, so the store can name an index key that lives in the same slot as the entries it lists.
/// The tags are found by a fixed search ("0", "1", ... in base 36), identical in every process and run.
/// </summary>
internal static class HashSlots
{
    /// <summary>Slots of a Redis Cluster.</summary>
    public const int Count = 16384;

    private static readonly Lazy<string[]> Tags = new(FindTags);

    /// <summary>The slot of <paramref name="tag"/> used as a hash tag (the text between the braces).</summary>
    public static int Of(string tag)
    {
        ArgumentNullException.ThrowIfNull(tag);
        ushort crc = 0;
        foreach (char ch in tag)
        {
            // Tags here are ASCII (hex digits, base-36 digits); other text would need its UTF-8 bytes.
            if (ch > 0x7F) throw new ArgumentException("HashSlots.Of takes ASCII tags only.", nameof(tag));
            crc ^= (ushort)(ch << 8);
            for (int b = 0; b < 8; b++) crc = (crc & 0x8000) != 0 ? (ushort)((crc << 1) ^ 0x1021) : (ushort)(crc << 1);
        }
        return crc & (Count - 1);
    }

    /// <summary>A tag whose slot is <paramref name="slot"/>.</summary>
    public static string TagOf(int slot)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(slot);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(slot, Count);
        return Tags.Value[slot];
    }

    private static string[] FindTags()
    {
        var tags = new string[Count];
        int found = 0;
        for (long i = 0; found < Count; i++)
        {
            string candidate = Base36(i);
            int slot = Of(candidate);
            if (tags[slot] is null) { tags[slot] = candidate; found++; }
        }
        return tags;
    }

    private static string Base36(long value)
    {
        const string digits = "0123456789abcdefghijklmnopqrstuvwxyz";
        if (value == 0) return "0";
        Span<char> buffer = stackalloc char[16];
        int at = buffer.Length;
        for (; value > 0; value /= 36) buffer[--at] = digits[(int)(value % 36)];
        return new string(buffer[at..]).ToString(CultureInfo.InvariantCulture);
    }
}
