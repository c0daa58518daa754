// A minimal ASP.NET Core service over KVLink.Core: documents are precomputed once (POST /documents), questions are
// answered from their stored caches through the IChatClient (POST /chat, POST /chat/stream), an OpenAI-compatible
// endpoint serves whole conversations (POST /v1/chat/completions, GET /v1/models), and GET /chat is a small chat page.
var app = KVLink.AspNetCore.SampleApp.Build(args);
app.Run();
