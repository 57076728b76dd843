using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;
using Pretrain.Tests.Training;
using SkiaSharp;
using Xunit;

namespace Pretrain.Tests.Data.Images;

public class ImageFolderTests
{
    private readonly string input = TestRecipes.TemporaryDirectory();
    private readonly string output = TestRecipes.TemporaryDirectory();

    private void Image(string relative, int width, int height, SKColor colour, SKEncodedImageFormat format = SKEncodedImageFormat.Png)
    {
        var path = Path.Combine(input, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var bitmap = new SKBitmap(width, height);
        bitmap.Erase(colour);
        using var stream = File.Create(path);
        bitmap.Encode(stream, format, 100);
    }

    private IPreparationPlan Prepare(double validationFraction, long seed = 7)
    {
        var plan = PreparationPlans.Create(new PrepareSpec("images", [input], output, ValidationFraction: validationFraction, Seed: seed, ShardBytes: 3 * 6 * 8 * 4));
        foreach (var task in plan.Tasks)
            plan.Run(task, null, CancellationToken.None);
        plan.Finish();
        return plan;
    }

    [Fact]
    public void Sub_folders_are_classes_and_every_image_takes_the_first_images_size()
    {
        Image("cat/a.png", 8, 6, SKColors.Red);
        Image("cat/b.png", 16, 12, SKColors.Lime);             // twice the size: scaled down
        Image("dog/c.jpg", 30, 6, SKColors.Blue, SKEncodedImageFormat.Jpeg); // wider: centre-cropped
        Prepare(validationFraction: 0);
        var index = ShardIndex.Load(output);
        Assert.Equal((3, 6, 8), (index.Image!.Channels, index.Image.Height, index.Image.Width));
        Assert.Equal(["cat", "dog"], index.Image.LabelNames);
        Assert.Equal(0, index.Splits["validation"].Samples);
        using var train = ShardSet.Open(output, "train");
        Assert.Equal([0, 0, 1], Enumerable.Range(0, 3).Select(i => train.Label(i)));
        var red = train.Record<byte>(0);
        Assert.Equal(3 * 6 * 8, red.Length);
        Assert.True(red[..48].ToArray().All(v => v == 255) && red[48..].ToArray().All(v => v == 0)); // CHW: the red plane first
        var green = train.Record<byte>(1);
        Assert.True(green[48..96].ToArray().All(v => v == 255) && green[..48].ToArray().All(v => v == 0));
        var blue = train.Record<byte>(2).ToArray(); // JPEG: near, not exact
        Assert.True(blue[96..].All(v => v > 230) && blue[..96].All(v => v < 25));
    }

    [Fact]
    public void The_validation_split_is_a_fixed_function_of_seed_and_path()
    {
        for (var i = 0; i < 20; i++)
            Image($"img{i:D2}.png", 8, 6, new SKColor((byte)(i * 10), 0, 0));
        Prepare(validationFraction: 0.3);
        var first = ShardIndex.Load(output).Splits.ToDictionary(s => s.Key, s => s.Value.Samples);
        Assert.Equal(20, first["train"] + first["validation"]);
        Assert.InRange(first["validation"], 1, 12);
        Assert.Empty(ShardIndex.Load(output).Image!.LabelNames); // files at the top: no classes
        var shards = Directory.GetFiles(output, "*.shard").Order().Select(File.ReadAllBytes).ToList();
        Prepare(validationFraction: 0.3);
        Assert.Equal(shards, Directory.GetFiles(output, "*.shard").Order().Select(File.ReadAllBytes).ToList());
    }

    [Fact]
    public void A_folder_without_images_or_an_undecodable_file_is_named()
    {
        var empty = Assert.Throws<InvalidDataException>(() => PreparationPlans.Create(new PrepareSpec("images", [input], output)));
        Assert.Contains("expected PNG or JPEG files", empty.Message);
        File.WriteAllText(Path.Combine(input, "broken.png"), "not a png");
        var broken = Assert.Throws<InvalidDataException>(() => PreparationPlans.Create(new PrepareSpec("images", [input], output)));
        Assert.Contains("broken.png", broken.Message);
    }
}
