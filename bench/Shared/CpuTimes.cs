using System.Globalization;

namespace Pretrain.Bench;

/// <summary>
/// This process's CPU time and page faults as the kernel counts them, all threads together: fields 14 (utime),
/// 15 (stime) and 10 (minflt) of <c>/proc/self/stat</c>. Times are in clock ticks (<c>getconf CLK_TCK</c>, 100 on
/// Linux); the caller converts, so a child need not know the tick. Much of a CPU trainer's kernel time is usually page
/// faults of freshly mapped tensor memory, which is why the minor faults are read with it.
/// </summary>
public readonly record struct CpuTimes(long UserTicks, long SystemTicks, long MinorFaults)
{
    public static CpuTimes OfThisProcess()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        // The command name (field 2) may hold spaces and parentheses: count fields from after its last ')'.
        // What follows starts at field 3 (state), so field k is at index k − 3.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        long Field(int k) => long.Parse(fields[k - 3], CultureInfo.InvariantCulture);
        return new(Field(14), Field(15), Field(10));
    }

    public static CpuTimes operator -(CpuTimes end, CpuTimes start) =>
        new(end.UserTicks - start.UserTicks, end.SystemTicks - start.SystemTicks, end.MinorFaults - start.MinorFaults);
}
