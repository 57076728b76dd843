using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Text;
using Xunit;

namespace Pretrain.Tests.Fuzz;

/// <summary>
/// The seeded mutator and the fuzz loop of every fuzz test (issue 14, item 5). Input i of a seed is the same on every
/// machine, so a failure names its seed and index and replays. The loop runs on a thread of its own that the test
/// watches: an input that runs longer than <see cref="Stall"/> fails the test as a hang, one that allocates more than
/// <see cref="MaxBytesPerInput"/> as an unbounded allocation, one that throws anything but the reader's error as a crash.
/// </summary>
public static class Mutations
{
    /// <summary>Inputs per fuzz test: 10,000, or PRETRAIN_FUZZ_COUNT for longer runs.</summary>
    public static readonly int Count = int.TryParse(Environment.GetEnvironmentVariable("PRETRAIN_FUZZ_COUNT"), out var n) && n > 0 ? n : 10_000;

    // Inputs are a few KB and readers answer in milliseconds; ten seconds on two busy cores is a hang.
    static readonly TimeSpan Stall = TimeSpan.FromSeconds(10);

    // Thousands of times any input here: more than this is a length field believed before it was checked.
    const long MaxBytesPerInput = 64L << 20;

    /// <summary>A mutation of <paramref name="input"/>: one to four edits chosen by <paramref name="random"/>.</summary>
    public static byte[] Mutate(byte[] input, Random random, ReadOnlySpan<byte> dictionary)
    {
        var bytes = new List<byte>(input);
        for (var edits = random.Next(1, 5); edits > 0; edits--)
        {
            var at = bytes.Count == 0 ? 0 : random.Next(bytes.Count);
            switch (random.Next(7))
            {
                case 0 when bytes.Count > 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;                  // a bit flip
                case 1 when bytes.Count > 0: bytes[at] = new byte[] { 0, 0xFF, 0x7F, 0x80, 1 }[random.Next(5)]; break;  // an edge value
                case 2: bytes.Insert(at, dictionary[random.Next(dictionary.Length)]); break;                  // a significant byte
                case 3 when bytes.Count > 0: bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 16))); break;
                case 4 when bytes.Count > 0:                                                                   // a run duplicated
                    var run = bytes.GetRange(at, Math.Min(bytes.Count - at, random.Next(1, 64)));
                    bytes.InsertRange(random.Next(bytes.Count), run);
                    break;
                case 5: bytes.RemoveRange(at, bytes.Count - at); break;                                        // truncated
                default:
                    if (bytes.Count >= 8)                                                                      // an 8-byte field made huge or negative
                    {
                        var field = random.Next(bytes.Count - 7);
                        var value = new[] { long.MaxValue, long.MinValue, -1L, int.MaxValue + 1L, 1L << 40 }[random.Next(5)];
                        for (var k = 0; k < 8; k++) bytes[field + k] = BitConverter.GetBytes(value)[k];
                    }
                    break;
            }
        }
        return [.. bytes];
    }

    /// <summary>
    /// Runs <paramref name="read"/> on <paramref name="valid"/>, which it must accept, then on <see cref="Count"/> mutations
    /// of it; only <typeparamref name="TError"/> may escape. <paramref name="dictionary"/> holds the bytes that mean
    /// something to the reader, one per character (Latin-1, so "\xFF" is the byte 0xFF).
    /// </summary>
    public static void Fuzz<TError>(byte[] valid, string dictionary, int seed, Action<byte[]> read) where TError : Exception
    {
        read(valid);
        var significant = Encoding.Latin1.GetBytes(dictionary);
        var refused = Run<byte[], TError>(seed, random => Mutate(valid, random, significant), read,
            input => $"{input.Length} bytes: {Convert.ToBase64String(input)}");
        AssertReachesTheChecks(refused);
    }

    /// <summary>Fails when so few inputs were refused that the mutations cannot have reached the reader's checks.</summary>
    public static void AssertReachesTheChecks(int refused) =>
        Assert.True(refused > Count / 10, $"only {refused} of {Count} mutations were refused: the mutator is not reaching the checks");

    /// <summary>
    /// Reads <see cref="Count"/> inputs that <paramref name="next"/> makes from one <see cref="Random"/> of
    /// <paramref name="seed"/>, on a watched thread, and returns how many were refused with <typeparamref name="TError"/>.
    /// Another exception, a hang or an unbounded allocation fails the test, showing the input with <paramref name="describe"/>.
    /// </summary>
    public static int Run<TInput, TError>(int seed, Func<Random, TInput> next, Action<TInput> read, Func<TInput, string> describe)
        where TError : Exception
    {
        var reading = -1;                      // the index of the input being read, for the watchdog
        var refused = 0;
        Exception? failure = null;
        var loop = new Thread(() =>
        {
            try
            {
                var random = new Random(seed);
                for (var i = 0; i < Count; i++)
                {
                    var input = next(random);
                    Volatile.Write(ref reading, i);
                    var before = GC.GetAllocatedBytesForCurrentThread();
                    try { read(input); }
                    catch (TError) { refused++; }
                    catch (Exception e)
                    {
                        throw new Xunit.Sdk.XunitException($"input {i} of seed {seed} escaped as {e.GetType().Name}: {e.Message}\n{describe(input)}");
                    }
                    var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                    if (allocated > MaxBytesPerInput)
                        throw new Xunit.Sdk.XunitException($"input {i} of seed {seed} allocated {allocated >> 20} MiB, more than {MaxBytesPerInput >> 20} MiB " +
                                                 $"for any input: a length in it was believed\n{describe(input)}");
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { IsBackground = true, Name = $"fuzz seed {seed}" };   // a hung reader must not keep the test host alive

        loop.Start();
        var watched = -1;
        var since = Stopwatch.StartNew();
        while (!loop.Join(TimeSpan.FromMilliseconds(100)))
        {
            var now = Volatile.Read(ref reading);
            if (now != watched)
            {
                watched = now;
                since.Restart();
            }
            else if (since.Elapsed > Stall)
                throw new Xunit.Sdk.XunitException(now < 0
                    ? $"the fuzz loop of seed {seed} made no input in {Stall.TotalSeconds:0} s"
                    : $"input {now} of seed {seed} hung: no answer in {Stall.TotalSeconds:0} s\n{describe(Replay(seed, next, now))}");
        }
        if (failure is not null)
            ExceptionDispatchInfo.Throw(failure);
        return refused;
    }

    /// <summary>Input <paramref name="index"/> of <paramref name="seed"/>, made again (the hung thread still holds the first).</summary>
    static TInput Replay<TInput>(int seed, Func<Random, TInput> next, int index)
    {
        var random = new Random(seed);
        var input = next(random);
        for (var i = 0; i < index; i++)
            input = next(random);
        return input;
    }
}
