namespace Pretrain.Data.Text;

/// <summary>One input file; <see cref="Key"/> is its path relative to the input it came from (stable across machines).</summary>
public sealed record TextFile(string Path, string Key, long Bytes);

/// <summary>
/// One document: a byte range of a file. A plain text file is one document, cut at line breaks into
/// passages of at most <see cref="TextCorpus.PassageBytes"/>; a JSONL line is one document (its field).
/// <see cref="Ordinal"/> is the passage number (plain) or the 1-based line number (JSONL).
/// </summary>
public readonly record struct TextDocument(int File, long Offset, int Length, long Ordinal);

/// <summary>
/// The documents of a corpus in a fixed order: inputs as given, folders recursively in ordinal path order,
/// documents in file order. Scanning reads only what it must: plain files up to 64 KiB not at all
/// (their size decides), longer ones one window per passage, JSONL files once for their line breaks.
/// Memory is ~24 bytes per document (10M JSONL lines ≈ 240 MB), the price of knowing the corpus up front
/// so the split and the shards are fixed before any task runs.
/// </summary>
public sealed class TextCorpus
{
    // 64 KiB is ~16k cl100k tokens (~4 bytes a token), longer than any context we train (≤ 2048), so
    // cutting a long file at a line break costs a model almost nothing; it gives the 4.3 MB KJV 66
    // documents, enough for a 1-2% validation split by document.
    public const int PassageBytes = 64 << 10;
    private const int ScanChunkBytes = 1 << 20;

    private TextCorpus(IReadOnlyList<TextFile> files, IReadOnlyList<TextDocument> documents, string? jsonField)
    {
        Files = files;
        Documents = documents;
        JsonField = jsonField;
    }

    public IReadOnlyList<TextFile> Files { get; }
    public IReadOnlyList<TextDocument> Documents { get; }
    public string? JsonField { get; }
    public long Bytes => Files.Sum(f => f.Bytes);

    /// <summary>
    /// Lists the files of <paramref name="inputs"/> and their documents; every file is JSONL when
    /// <paramref name="jsonField"/> is given, plain UTF-8 text otherwise. Hidden entries (".name") in
    /// folders are skipped. Errors name the input and what was expected.
    /// </summary>
    public static TextCorpus Scan(IReadOnlyList<string> inputs, string? jsonField)
    {
        if (inputs.Count == 0)
            throw new InvalidDataException("text corpus: no inputs (expected UTF-8 text files, folders or JSONL files)");
        var files = new List<TextFile>();
        foreach (var input in inputs)
            files.AddRange(ListFiles(input));
        var documents = new List<TextDocument>();
        for (var f = 0; f < files.Count; f++)
        {
            if (jsonField is null)
                CutPassages(files[f], f, documents);
            else
                FindLines(files[f], f, documents);
        }
        if (documents.Count == 0)
            throw new InvalidDataException(
                $"text corpus is empty: {string.Join(", ", inputs)} hold no documents " +
                (jsonField is null ? "(expected non-empty UTF-8 text files)" : $"(expected JSONL lines with a \"{jsonField}\" field)"));
        return new TextCorpus(files, documents, jsonField);
    }

    private static IEnumerable<TextFile> ListFiles(string input)
    {
        if (File.Exists(input))
            return [new TextFile(input, Path.GetFileName(input), new FileInfo(input).Length)];
        if (!Directory.Exists(input))
            throw new InvalidDataException($"{input}: not found (expected a UTF-8 text file, a folder of them, or a JSONL file)");
        return Directory.EnumerateFiles(input, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.Hidden })
            .Select(path => (Path: path, Key: Path.GetRelativePath(input, path).Replace('\\', '/')))
            .Where(f => !f.Key.Split('/').Any(part => part.StartsWith('.')))
            .OrderBy(f => f.Key, StringComparer.Ordinal)
            .Select(f => new TextFile(f.Path, f.Key, new FileInfo(f.Path).Length));
    }

    private static void CutPassages(TextFile file, int index, List<TextDocument> documents)
    {
        using var handle = File.OpenHandle(file.Path);
        Span<byte> bom = stackalloc byte[3];
        long start = RandomAccess.Read(handle, bom, 0) == 3 && bom.SequenceEqual("\uFEFF"u8) ? 3 : 0;
        var window = new byte[PassageBytes];
        for (long ordinal = 0; start < file.Bytes; ordinal++)
        {
            var length = (int)Math.Min(PassageBytes, file.Bytes - start);
            if (start + length < file.Bytes)
                length = CutPoint(window.AsSpan(0, RandomAccess.Read(handle, window, start)));
            documents.Add(new TextDocument(index, start, length, ordinal));
            start += length;
        }
    }

    // After the last line break in the window; without one, after the last whole character (UTF-8
    // continuation bytes are 10xxxxxx; a lead byte says how many follow), so passages are whole characters.
    private static int CutPoint(ReadOnlySpan<byte> window)
    {
        var newline = window.LastIndexOf((byte)'\n');
        if (newline >= 0)
            return newline + 1;
        var lead = window.Length - 1;
        while (lead > 0 && window.Length - lead < 4 && (window[lead] & 0xC0) == 0x80)
            lead--;
        var need = window[lead] >= 0xF0 ? 4 : window[lead] >= 0xE0 ? 3 : window[lead] >= 0xC0 ? 2 : 1;
        return window.Length - lead >= need || lead == 0 ? window.Length : lead;
    }

    private static void FindLines(TextFile file, int index, List<TextDocument> documents)
    {
        using var handle = File.OpenHandle(file.Path);
        var chunk = new byte[ScanChunkBytes];
        long lineStart = 0, line = 1;
        var blank = true;
        void EndLine(long end)
        {
            if (!blank)
            {
                if (end - lineStart > int.MaxValue)
                    throw new InvalidDataException($"{file.Path}: line {line}: longer than 2 GiB (expected one JSON document per line)");
                documents.Add(new TextDocument(index, lineStart, (int)(end - lineStart), line));
            }
            lineStart = end + 1;
            line++;
            blank = true;
        }
        for (long position = 0; position < file.Bytes;)
        {
            var read = RandomAccess.Read(handle, chunk, position);
            if (read == 0)
                break;
            for (var i = 0; i < read; i++)
            {
                if (chunk[i] == '\n')
                    EndLine(position + i);
                else
                    blank &= chunk[i] is (byte)' ' or (byte)'\t' or (byte)'\r';
            }
            position += read;
        }
        if (lineStart < file.Bytes)
            EndLine(file.Bytes);
    }
}
