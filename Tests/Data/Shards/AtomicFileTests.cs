using System.Diagnostics;
using Pretrain.Data.Shards;
using Xunit;

namespace Pretrain.Tests.Data.Shards;

public sealed class AtomicFileTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("atomic-").FullName;

    static int ExitedProcessId()
    {
        using var process = Process.Start("true")!;
        process.WaitForExit();
        return process.Id;
    }

    [Fact]
    public void Writing_a_shard_again_removes_what_a_dead_writer_left_and_keeps_a_live_writers_file()
    {
        string shard = Path.Combine(_dir, "train-00002.shard");
        string dead = $"{shard}.tmp-{ExitedProcessId()}";
        File.WriteAllText(dead, "half a shard from a killed prepare");
        using var live = Process.Start("sleep", "30")!;
        string busy = $"{shard}.tmp-{live.Id}";
        File.WriteAllText(busy, "another writer, still running");

        using (var writer = new ShardWriter(shard, ShardLayout.Tokens(ShardDType.UInt16)))
        {
            writer.Append<ushort>(new ushort[] { 1, 2, 3 });
            writer.Complete();
        }

        Assert.False(File.Exists(dead), "the dead writer's temporary file was left behind");
        Assert.True(File.Exists(busy), "a running writer's temporary file must not be touched");
        using var reader = ShardReader.Open(shard);
        Assert.Equal(1, reader.Count);
        live.Kill();
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
