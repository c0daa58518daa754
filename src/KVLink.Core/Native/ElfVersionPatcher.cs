using System.Buffers.Binary;
using System.Text;

namespace KVLink.Core.Native;

/// <summary>
/// Marks entries of an ELF64 shared object's version-needs table (<c>.gnu.version_r</c>) as weak
/// (<c>VER_FLG_WEAK</c>), so that the dynamic loader no longer refuses the object when the
/// providing library lacks that version. Only safe for versions no relocation depends on.
/// </summary>
internal static class ElfVersionPatcher
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>Sets VER_FLG_WEAK on every needed version whose name is in <paramref name="versions"/>.</summary>
    /// <returns>The number of entries changed (already-weak entries are not counted).</returns>
    /// <exception cref="InvalidDataException">The bytes are not a little-endian ELF64 object or the table is malformed.</exception>
    public static int MarkWeak(Span<byte> elf, IReadOnlySet<string> versions)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("Not an ELF file.");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("Only little-endian ELF64 objects are supported.");

        ulong shoff = U64(elf, 0x28);
        int shentsize = U16(elf, 0x3A), shnum = U16(elf, 0x3C);
        if (shentsize < 64 || shoff + (ulong)(shentsize * shnum) > (ulong)elf.Length)
            throw new InvalidDataException("Section header table lies outside the file.");

        int changed = 0;
        for (int s = 0; s < shnum; s++)
        {
            int sh = checked((int)shoff + s * shentsize);
            if (U32(elf, sh + 4) != ShtGnuVerneed) continue;

            int tableOffset = Checked(elf, U64(elf, sh + 24));
            int entries = (int)U32(elf, sh + 44);
            int strSection = checked((int)shoff + (int)U32(elf, sh + 40) * shentsize);
            int strOffset = Checked(elf, U64(elf, strSection + 24));

            int need = tableOffset;
            for (int n = 0; n < entries; n++)
            {
                int count = U16(elf, need + 2);
                int aux = need + (int)U32(elf, need + 8);
                for (int a = 0; a < count; a++)
                {
                    Checked(elf, (ulong)aux + 16);
                    string name = CString(elf, strOffset + (int)U32(elf, aux + 8));
                    ushort flags = (ushort)U16(elf, aux + 4);
                    if (versions.Contains(name) && (flags & VerFlgWeak) == 0)
                    {
                        BinaryPrimitives.WriteUInt16LittleEndian(elf[(aux + 4)..], (ushort)(flags | VerFlgWeak));
                        changed++;
                    }
                    aux += (int)U32(elf, aux + 12);
                }
                uint next = U32(elf, need + 12);
                if (next == 0) break;
                need += (int)next;
            }
        }
        return changed;
    }

    private static int Checked(ReadOnlySpan<byte> elf, ulong offset) =>
        offset <= (ulong)elf.Length ? (int)offset : throw new InvalidDataException("Offset outside the file.");

    private static string CString(ReadOnlySpan<byte> elf, int offset)
    {
        int end = elf[offset..].IndexOf((byte)0);
        if (end < 0) throw new InvalidDataException("Unterminated string.");
        return Encoding.ASCII.GetString(elf.Slice(offset, end));
    }

    private static ulong U64(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt64LittleEndian(b[o..]);
    private static uint U32(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt32LittleEndian(b[o..]);
    private static int U16(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt16LittleEndian(b[o..]);
}
