using System.Buffers;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.Win32.SafeHandles;

namespace Pretrain.Data.Text;

/// <summary>
/// Reads the text of documents of one <see cref="TextCorpus"/>: strict UTF-8 (no replacement characters),
/// and for JSONL the string of the named field. Every error names the file, the line (JSONL) or byte
/// offset, and what was expected. Keeps files open until disposed; one reader per task, not thread-safe.
/// </summary>
public sealed class DocumentReader(TextCorpus corpus) : IDisposable
{
    private readonly Dictionary<int, SafeFileHandle> handles = [];
    private byte[] bytes = [];
    private char[] chars = [];

    public string Read(TextDocument document)
    {
        var file = corpus.Files[document.File];
        if (bytes.Length < document.Length)
        {
            bytes = new byte[Math.Max(document.Length, 2 * bytes.Length)];
            chars = new char[bytes.Length];
        }
        var span = bytes.AsSpan(0, document.Length);
        var read = RandomAccess.Read(Handle(document.File), span, document.Offset);
        if (read != document.Length)
            throw new InvalidDataException($"{file.Path}: offset {document.Offset + read}: file ended early (it changed since the corpus was scanned)");
        var status = Utf8.ToUtf16(span, chars, out var valid, out var written, replaceInvalidSequences: false);
        if (status != OperationStatus.Done)
            throw new InvalidDataException(corpus.JsonField is null
                ? $"{file.Path}: byte offset {document.Offset + valid}: invalid UTF-8 (expected UTF-8 text)"
                : $"{file.Path}: line {document.Ordinal}: invalid UTF-8 at byte offset {document.Offset + valid} (expected UTF-8 JSON)");
        return corpus.JsonField is { } field ? FieldOf(bytes.AsMemory(0, document.Length), field, file, document.Ordinal) : new string(chars, 0, written);
    }

    private static string FieldOf(ReadOnlyMemory<byte> line, string field, TextFile file, long lineNumber)
    {
        try
        {
            using var json = JsonDocument.Parse(line); // the whole line must be one JSON value
            if (json.RootElement.ValueKind == JsonValueKind.Object
                && json.RootElement.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.String)
                return value.GetString()!;
            var found = json.RootElement.ValueKind != JsonValueKind.Object ? $"a JSON {json.RootElement.ValueKind.ToString().ToLowerInvariant()}"
                : json.RootElement.TryGetProperty(field, out var other) ? $"\"{field}\" as {other.ValueKind.ToString().ToLowerInvariant()}"
                : "no such field";
            throw new InvalidDataException($"{file.Path}: line {lineNumber}: expected an object with a string field \"{field}\", found {found}");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{file.Path}: line {lineNumber}: not JSON at byte {e.BytePositionInLine} ({e.Message.Split(" LineNumber")[0]})", e);
        }
    }

    private SafeFileHandle Handle(int file)
    {
        if (!handles.TryGetValue(file, out var handle))
            handles[file] = handle = File.OpenHandle(corpus.Files[file].Path);
        return handle;
    }

    public void Dispose()
    {
        foreach (var handle in handles.Values)
            handle.Dispose();
        handles.Clear();
    }
}
