using KVLink.Core.Engine;
using KVLink.Core.Prompting;
using KVLink.Core.Tests.Tokenization;
using KVLink.TestSupport;

namespace KVLink.Core.Tests.Prompting;

/// <summary>The slot-free document header: the same tokens in every slot, its own format name, and recorded in a checkpoint's kvlink_prompt.json.</summary>
public class SlotFreeHeaderTests
{
    private static readonly KvLinkDocument Doc = new("Lyon is a city in France.", "Lyon");

    [Fact]
    public void A_slot_free_document_has_the_same_tokens_in_every_slot_and_a_header_without_a_number()
    {
        var tok = Cl100kTestData.Tokenizer;
        var numbered = KvLinkLlama3Format.Published;
        var free = numbered.WithSlotFreeHeader();
        Assert.True(numbered.DocumentDependsOnSlot);
        Assert.False(free.DocumentDependsOnSlot);
        Assert.NotEqual(numbered.Name, free.Name); // caches of the two headers never mix
        Assert.Equal(numbered.Name, free.WithSlotFreeHeader(false).Name);

        Assert.Equal(tok.EncodeText("Document (Title: Lyon) Lyon is a city in France.\n"), free.Document(tok, Doc, 0));
        foreach (int slot in new[] { 1, 4, 9 })
        {
            Assert.Equal(free.Document(tok, Doc, 0), free.Document(tok, Doc, slot));
            Assert.NotEqual(numbered.Document(tok, Doc, 0), numbered.Document(tok, Doc, slot));
            // Link-token ids stay per slot: they are computed at query time, never cached.
            Assert.Equal(numbered.LinkTokenId(5, slot, 2), free.LinkTokenId(5, slot, 2));
        }
        int header = free.DocumentHeaderLength(tok, Doc, 3);
        Assert.Equal("Document (Title: Lyon)", tok.Decode(free.Document(tok, Doc, 3).Take(header).ToList()));
    }

    [Fact]
    public void WithSlotFreeHeader_keeps_every_other_setting()
    {
        var f = new KvLinkLlama3Format("Sys.", 10, 20, 40, 41, [3]) { SpecialTokensInText = true }.WithSlotFreeHeader();
        Assert.Equal(("Sys.", 10, 20, 40, 41, true, true), (f.SystemText, f.LinkTokenStart, f.LinkTokenIdCount, f.MemStart, f.MemEnd, f.SpecialTokensInText, f.SlotFreeHeader));
        Assert.Equal(new[] { 3 }, f.StopTokenIds);
    }

    [Fact]
    public async Task LoadAsync_takes_the_document_header_a_folder_was_trained_with()
    {
        using var dir = new TempFolder();
        SyntheticCheckpoint.Write(dir.Path, SyntheticCheckpoint.SmallConfig(hidden: 32, layers: 1, heads: 2, kvHeads: 1));
        PromptSettingsFile.Write(dir.Path, "Be brief.", slotFree: true);
        Assert.Contains("\"document_header\":\"slot-free\"", File.ReadAllText(Path.Combine(dir.Path, PromptSettingsFile.FileName)));
        await using (var free = await KvLinkEngine.LoadAsync(dir.Path, new KvLinkOptions { DType = ComputeDType.Float32 }))
        {
            var format = Assert.IsType<KvLinkLlama3Format>(free.PromptFormat);
            Assert.Equal(("Be brief.", true), (format.SystemText, format.SlotFreeHeader));
            Assert.Equal(0, free.CacheKey("d", 7).Slot); // one cache per document, whatever the slot policy
        }
        PromptSettingsFile.Write(dir.Path, "Be brief.", slotFree: false);
        await using (var numbered = await KvLinkEngine.LoadAsync(dir.Path, new KvLinkOptions { DType = ComputeDType.Float32, SlotPolicy = SlotPolicy.Exact }))
        {
            Assert.False(((KvLinkLlama3Format)numbered.PromptFormat).SlotFreeHeader);
            Assert.Equal(7, numbered.CacheKey("d", 7).Slot);
        }
        // An older file without the field is the published numbered header.
        File.WriteAllText(Path.Combine(dir.Path, PromptSettingsFile.FileName), "{\"system_text\":\"Be brief.\"}");
        Assert.Equal(new PromptSettingsFile.Settings("Be brief.", false), PromptSettingsFile.Read(dir.Path));
        // A value the engine does not know is an error naming the file, not a silent fallback to the numbered header.
        File.WriteAllText(Path.Combine(dir.Path, PromptSettingsFile.FileName), "{\"system_text\":\"Be brief.\",\"document_header\":\"roman\"}");
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => KvLinkEngine.LoadAsync(dir.Path, new KvLinkOptions { DType = ComputeDType.Float32 }));
        Assert.Contains(PromptSettingsFile.FileName, e.Message);
        Assert.Contains("document_header", e.Message);
    }
}
