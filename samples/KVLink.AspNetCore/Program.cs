// A minimal ASP.NET Core service over KVLink.Core and the KVLink.AspNetCore package: documents are precomputed once
// (POST /documents), whole conversations are answered from their stored caches by the OpenAI-compatible endpoint
// (POST /v1/chat/completions, GET /v1/models), and GET /chat is a small chat page.
var app = KVLink.AspNetCore.Sample.SampleApp.Build(args);
app.Run();
