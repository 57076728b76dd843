using Pretrain.Build;
using Xunit;

namespace Pretrain.Tests.Build;

/// <summary>The build step that makes TorchSharp load on Debian 12 (build/ElfVersionPatcher.cs).</summary>
public sealed class ElfVersionPatcherTests : IDisposable
{
    const string Version = "GLIBCXX_3.4.32";
    static readonly string[] Anchor = ["_ZSt21ios_base_library_initv"];
    readonly string _dir = Directory.CreateTempSubdirectory("elfpatch-").FullName;

    static string CachedLibrary()
    {
        string packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(packages, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    string CopyOfCachedLibrary()
    {
        string copy = Path.Combine(_dir, "libLibTorchSharp.so");
        File.Copy(CachedLibrary(), copy);
        return copy;
    }

    [Fact]
    public void Weakens_the_anchor_version_and_nothing_else()
    {
        string lib = CopyOfCachedLibrary();
        Assert.False(ElfVersionPatcher.IsWeak(lib, Version));
        byte[] before = File.ReadAllBytes(lib);

        var result = ElfVersionPatcher.WeakenVersionRequirement(lib, Version, Anchor);

        Assert.True(result.Patched, result.Message);
        Assert.True(ElfVersionPatcher.IsWeak(lib, Version));
        byte[] after = File.ReadAllBytes(lib);
        Assert.Equal(before.Length, after.Length);
        Assert.Equal(1, before.Zip(after).Count(p => p.Item1 != p.Item2));   // one flag byte
        Assert.True(ElfVersionPatcher.WeakenVersionRequirement(lib, Version, Anchor).AlreadyWeak);
    }

    [Fact]
    public void Refuses_to_weaken_a_version_that_real_code_needs()
    {
        string lib = CopyOfCachedLibrary();
        // GLIBCXX_3.4.9 binds many symbols the library really calls: weakening it would be unsafe.
        var e = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.WeakenVersionRequirement(lib, "GLIBCXX_3.4.9", Anchor));
        Assert.Contains("Refusing to patch", e.Message);
        Assert.Equal(File.ReadAllBytes(CachedLibrary()), File.ReadAllBytes(lib));
    }

    [Fact]
    public void A_truncated_library_gets_an_error_naming_the_file()
    {
        string lib = Path.Combine(_dir, "truncated.so");
        File.WriteAllBytes(lib, File.ReadAllBytes(CachedLibrary()).AsSpan(0, 4096).ToArray());
        var e = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.WeakenVersionRequirement(lib, Version, Anchor));
        Assert.Contains(lib, e.Message);
    }

    [Fact]
    public void The_build_patched_its_output_but_not_the_NuGet_cache()
    {
        string output = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        string? host = ElfVersionPatcher.FindHostLibStdCxx();
        Assert.NotNull(host);
        bool hostHasVersion = ElfVersionPatcher.DefinedVersions(host!).Contains(Version);
        Assert.Equal(!hostHasVersion, ElfVersionPatcher.IsWeak(output, Version));
        Assert.False(ElfVersionPatcher.IsWeak(CachedLibrary(), Version));
    }

    [Fact]
    public void Torch_runs_in_this_process()
    {
        using var a = TorchSharp.torch.arange(6, dtype: TorchSharp.torch.float32).reshape(2, 3);
        using var product = a.matmul(a.t());            // [[5, 14], [14, 50]]
        Assert.Equal(50f, product[1, 1].item<float>());
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
