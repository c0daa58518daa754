using KVLink.Core.Caching;

// Usage:
//   CrashWriter <bytes-file> <target-path>
//     Copies the serialized entry to the target with the file store's atomic writer, announces "MID" after the
//     first 1 MiB chunk and then waits (bounded) to be killed.
//   CrashWriter loop <bytes-dir> <store-dir>
//     Writes every "<entry file name>.bin" of bytes-dir into store-dir with the atomic writer, over and over,
//     announcing "READY" once; the parent kills it at a random moment. Stops by itself after ten minutes.
if (args.Length == 3 && args[0] == "loop")
{
    var entries = Directory.GetFiles(args[1], "*.bin").Select(f => (Name: Path.GetFileNameWithoutExtension(f), Bytes: File.ReadAllBytes(f))).ToArray();
    Console.Out.WriteLine("READY");
    Console.Out.Flush();
    var until = DateTime.UtcNow.AddMinutes(10);
    while (DateTime.UtcNow < until)
        foreach (var (name, bytes) in entries)
            FileKvCacheStore.WriteAtomically(Path.Combine(args[2], name), bytes);
    return 4;
}

byte[] single = File.ReadAllBytes(args[0]);
FileKvCacheStore.WriteAtomically(args[1], single, chunk =>
{
    if (chunk != 0) return;
    Console.Out.WriteLine("MID");
    Console.Out.Flush();
    Thread.Sleep(TimeSpan.FromSeconds(60));
    Environment.Exit(3);
});
return 0;
