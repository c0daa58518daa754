using KVLink.Core.Caching;

// Usage: CrashWriter <bytes-file> <target-path>
// Copies the serialized entry to the target with the file store's atomic writer, announces "MID" after the
// first 1 MiB chunk and then waits (bounded) to be killed.
byte[] bytes = File.ReadAllBytes(args[0]);
FileKvCacheStore.WriteAtomically(args[1], bytes, chunk =>
{
    if (chunk != 0) return;
    Console.Out.WriteLine("MID");
    Console.Out.Flush();
    Thread.Sleep(TimeSpan.FromSeconds(60));
    Environment.Exit(3);
});
return 0;
