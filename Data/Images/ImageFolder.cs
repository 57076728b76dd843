using System.IO.Hashing;
using System.Text;
using SkiaSharp;

namespace Pretrain.Data.Images;

/// <summary>
/// A folder of PNG/JPEG files, decoded with SkiaSharp to 3-channel RGB. Rules (docs/FORMATS.md):
/// files are taken recursively in ordinal order of their relative path; when every file sits in a
/// sub-folder, the first sub-folder is its class (labels = sorted class names), else there are no labels;
/// every image is scaled (bilinear, keeping its aspect ratio) to cover the size of the first file and
/// centre-cropped to it, over black where it is transparent; a file goes to "validation" when a hash of
/// (seed, relative path) falls below ValidationFraction, so adding files never moves the others.
/// </summary>
public static class ImageFolder
{
    private static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    public static ImageDataset Open(IReadOnlyList<string> inputs, double validationFraction, long seed)
    {
        var files = inputs.SelectMany(root => Directory.Exists(root)
                ? Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
                    .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                    .Select(f => (Path: f, Relative: Path.GetRelativePath(root, f).Replace('\\', '/')))
                : throw new DirectoryNotFoundException($"{root}: expected a folder of PNG/JPEG images"))
            .OrderBy(f => f.Relative, StringComparer.Ordinal).ThenBy(f => f.Path, StringComparer.Ordinal)
            .ToList();
        if (files.Count == 0)
            throw new InvalidDataException($"{string.Join(", ", inputs)}: expected PNG or JPEG files (.png, .jpg, .jpeg), found none");
        var labelled = files.All(f => f.Relative.Contains('/'));
        var names = labelled ? files.Select(f => ClassOf(f.Relative)).Distinct().Order(StringComparer.Ordinal).ToList() : [];
        var (width, height) = SizeOf(files[0].Path);
        var entries = files.Select(f => new Entry(f.Path, labelled ? names.IndexOf(ClassOf(f.Relative)) : -1, IsValidation(f.Relative, seed, validationFraction)));
        var split = entries.ToLookup(e => e.Validation);
        return new ImageDataset("images", 3, height, width, names,
            [new FileSplit("train", [.. split[false]], width, height), new FileSplit("validation", [.. split[true]], width, height)]);
    }

    private static string ClassOf(string relative) => relative[..relative.IndexOf('/')];

    private static bool IsValidation(string relative, long seed, double fraction)
    {
        var hash = XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(relative), seed);
        return (hash >> 11) * (1.0 / (1UL << 53)) < fraction; // top 53 bits: a uniform double in [0, 1)
    }

    private static (int Width, int Height) SizeOf(string path)
    {
        using var codec = SKCodec.Create(path)
            ?? throw new InvalidDataException($"{path}: expected a PNG or JPEG image SkiaSharp can decode");
        return (codec.Info.Width, codec.Info.Height);
    }

    private sealed record Entry(string Path, int Label, bool Validation);

    private sealed class FileSplit(string name, IReadOnlyList<Entry> entries, int width, int height) : ImageSplit(name, entries.Count)
    {
        public override long InputBytes(long start, long count) =>
            entries.Skip(checked((int)start)).Take(checked((int)count)).Sum(e => new FileInfo(e.Path).Length);

        public override void Read(long start, long count, ImageSink sink, CancellationToken ct)
        {
            var chw = new byte[3 * width * height];
            using var target = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
            using var canvas = new SKCanvas(target);
            using var paint = new SKPaint { FilterQuality = SKFilterQuality.Medium, IsAntialias = true }; // bilinear + mipmaps
            for (var i = (int)start; i < start + count; i++)
            {
                ct.ThrowIfCancellationRequested();
                var entry = entries[i];
                using (var source = SKBitmap.Decode(entry.Path)
                    ?? throw new InvalidDataException($"{entry.Path}: expected a PNG or JPEG image SkiaSharp can decode"))
                {
                    canvas.Clear(SKColors.Black);
                    canvas.DrawBitmap(source, CoverCrop(source.Width, source.Height), new SKRect(0, 0, width, height), paint);
                    canvas.Flush();
                }
                ToChw(target.GetPixelSpan(), chw);
                sink(chw, entry.Label);
            }
        }

        // The centred source rectangle with the target's aspect ratio: scale to cover, then crop.
        private SKRect CoverCrop(int sourceWidth, int sourceHeight)
        {
            var scale = Math.Max((double)width / sourceWidth, (double)height / sourceHeight);
            float w = (float)(width / scale), h = (float)(height / scale);
            float x = (sourceWidth - w) / 2, y = (sourceHeight - h) / 2;
            return new SKRect(x, y, x + w, y + h);
        }

        // RGBA interleaved (opaque after drawing over black) to RGB planes.
        private void ToChw(ReadOnlySpan<byte> rgba, Span<byte> chw)
        {
            var plane = width * height;
            for (var p = 0; p < plane; p++)
            {
                chw[p] = rgba[4 * p];
                chw[plane + p] = rgba[4 * p + 1];
                chw[2 * plane + p] = rgba[4 * p + 2];
            }
        }
    }
}
