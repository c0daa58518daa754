// RAG console: index a folder of .txt/.md files into a file-backed KV cache store (once; later runs reuse it), then
// answer questions interactively from the retrieved documents' caches with KVLink; or `check <folder>` a checkpoint.
// The command line (options, ranges, help) is in RagConsoleCli.cs.
using KVLink.RagConsole;

return await RagConsoleCli.BuildRootCommand().Parse(args).InvokeAsync();
