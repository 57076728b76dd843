using System.Diagnostics;
using System.Text.RegularExpressions;
using k8s.Models;
using Pretrain.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Kubernetes;

/// <summary>
/// The image (k8s/image/Containerfile, issue 13). The quick check: the build stage's own `dotnet publish` line,
/// run here, produces the entrypoint the runtime stage names, and that output trains (TorchSharp's native
/// libraries load: the GLIBCXX cure is part of the publish); the user is the manifests' runAsUser. The image
/// itself — bases from debootstrap, `buildah bud`, a job inside it — is built by `./test.sh --long`.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]   // an image of Linux binaries, built with Linux tools
public sealed class ContainerfileTests(ITestOutputHelper output) : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-image-").FullName;
    static readonly string Containerfile = Path.Combine(RepoPaths.Root, "k8s", "image", "Containerfile");

    /// <summary>The Containerfile's instructions, continuation lines joined, comments dropped.</summary>
    static List<string> Instructions() =>
        [.. Regex.Split(Regex.Replace(File.ReadAllText(Containerfile), @"\\\n\s*", " "), "\n")
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#'))];

    [Fact]
    public async Task The_build_stages_publish_is_what_the_runtime_stage_runs_and_it_trains()
    {
        var instructions = Instructions();
        Assert.Equal(["FROM ${SDK_IMAGE} AS build", "FROM ${BASE_IMAGE} AS runtime"], instructions.Where(i => i.StartsWith("FROM ")));
        Assert.Contains("ARG BASE_IMAGE=mcr.microsoft.com/dotnet/runtime-deps:10.0", instructions);   // the usual base, overridable

        var publish = instructions.Single(i => i.StartsWith("RUN dotnet publish ", StringComparison.Ordinal));
        var args = publish["RUN dotnet ".Length..].Split(" && ")[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var project = args[1];
        Assert.True(File.Exists(Path.Combine(RepoPaths.Root, project)), $"the Containerfile publishes {project}, which does not exist");
        var outIndex = Array.IndexOf(args, "-o");
        var copy = Regex.Match(instructions.Single(i => i.StartsWith("COPY --from=build")), @"^COPY --from=build (\S+) (\S+)$");
        Assert.Equal(args[outIndex + 1], copy.Groups[1].Value);                 // the runtime stage copies what was published
        var entrypoint = Regex.Match(instructions.Single(i => i.StartsWith("ENTRYPOINT")), "^ENTRYPOINT \\[\"([^\"]+)\"\\]$").Groups[1].Value;
        Assert.Equal(copy.Groups[2].Value + "/pretrain", entrypoint);

        // Non-root, and the same user the manifests run as (their runAsUser, their fsGroup for the volumes).
        var user = instructions.Single(i => i.StartsWith("USER ")).Split(' ')[1].Split(':');
        var objects = Manifests.Load(Manifests.Render(Path.Combine(RepoPaths.Root, "k8s", "base")));
        foreach (var pods in Manifests.PodTemplates(objects).Where(p => p.Template.Spec.Containers.Any(c => c.Image.StartsWith("pretrain"))))
        {
            Assert.Equal(long.Parse(user[0]), pods.Template.Spec.SecurityContext.RunAsUser);
            Assert.Equal(long.Parse(user[1]), pods.Template.Spec.SecurityContext.RunAsGroup);
        }
        Assert.NotEqual("0", user[0]);
        var ignored = File.ReadAllLines(Path.Combine(RepoPaths.Root, ".containerignore"));
        Assert.Contains("**/bin/", ignored);
        Assert.Contains("**/obj/", ignored);

        // The build stage's publish, run here into a folder of our own.
        args[outIndex + 1] = Path.Combine(_dir, "out");
        var (code, text) = await Run("dotnet", args, RepoPaths.Root, TimeSpan.FromMinutes(8));
        Assert.True(code == 0, $"dotnet {string.Join(' ', args)} exited {code}:\n{text}");
        var published = Path.Combine(_dir, "out", Path.GetFileName(entrypoint));
        Assert.True(File.Exists(published), $"{published} was not published");
        Assert.True(File.GetUnixFileMode(published).HasFlag(UnixFileMode.UserExecute), $"{published} is not executable");

        // What the image's entrypoint does: answer --help, and train (libtorch loads from the publish output).
        (code, text) = await Run(published, ["--help"], _dir, TimeSpan.FromSeconds(60));
        Assert.True(code == 0 && text.Contains("coordinator"), text);
        (code, text) = await Run(published, ["local", "--recipe", RepoPaths.EditedTinyRecipe(_dir, "image.yaml", t => t), "--workers", "2",
            "--max-steps", "3", "--run-dir", Path.Combine(_dir, "run"), "--metrics-port", "-1", "--worker-metrics-port", "-1"], _dir, TimeSpan.FromMinutes(3));
        output.WriteLine(text);
        Assert.True(code == 0, text);
        Assert.True(File.Exists(Path.Combine(_dir, "run", "summary.json")));
    }

    [Fact]
    [Trait("Category", "Long")]
    public async Task The_image_builds_from_a_local_base_and_runs_a_job_inside()
    {
        var (code, text) = await Run(Path.Combine(RepoPaths.Root, "k8s", "image", "build.sh"), [], RepoPaths.Root, TimeSpan.FromMinutes(40));
        Assert.True(code == 0, text);
        var image = text.TrimEnd().Split('\n')[^1].Trim();
        Assert.Contains("Usage:", text);                                       // build.sh ran `pretrain --help` in the image

        // A short job inside the image, as its user, its data and recipe mounted from here.
        var work = Path.Combine(_dir, "work");
        Directory.CreateDirectory(work);
        File.Copy(RepoPaths.KjvText, Path.Combine(work, "kjv.txt"));
        var recipe = File.ReadAllText(RepoPaths.Recipe("gpt-kjv-tiny.yaml")).Replace("../data/kjv.txt", "/work/kjv.txt");
        File.WriteAllText(Path.Combine(work, "tiny.yaml"), recipe);
        File.SetUnixFileMode(work, (UnixFileMode)0x1FF);                       // writable by the image's user
        (code, text) = await Run("buildah", ["from", image], _dir, TimeSpan.FromMinutes(2));
        Assert.True(code == 0, text);
        var container = text.Trim().Split('\n')[^1];
        try
        {
            (code, text) = await Run("buildah", ["run", "--isolation", "chroot", "--volume", $"{work}:/work", container, "--",
                "/opt/pretrain/pretrain", "local", "--recipe", "/work/tiny.yaml", "--workers", "2", "--max-steps", "3",
                "--run-dir", "/work/run", "--metrics-port", "-1", "--worker-metrics-port", "-1"], _dir, TimeSpan.FromMinutes(5));
            output.WriteLine(text);
            Assert.True(code == 0, text);
            Assert.True(File.Exists(Path.Combine(work, "run", "summary.json")), text);
        }
        finally
        {
            await Run("buildah", ["rm", container], _dir, TimeSpan.FromMinutes(1));
        }
    }

    static async Task<(int Code, string Output)> Run(string program, IEnumerable<string> args, string directory, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(program) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try { await process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"{program} did not finish within {timeout}:\n{await stderr}\n{await stdout}");
        }
        return (process.ExitCode, await stderr + "\n" + await stdout);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
