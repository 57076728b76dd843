using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Pretrain.Coordinator.Security;
using Pretrain.Shared.Telemetry;

namespace Pretrain.Coordinator.Actors;

/// <summary>Published on the event stream by the job actor when a registration from <paramref name="Node"/> proved the job secret.</summary>
public sealed record MemberProven(Address Node);

/// <summary>
/// Downs cluster members that do not prove the job secret within the grace period (<see cref="AdmissionGuard"/> says
/// why). The coordinator's own node is exempt. Logs each one with its address and counts it in
/// <c>pretrain_rejected_connections_total{plane="control", reason="unproven_member"}</c>.
/// </summary>
public sealed class AdmissionActor : ReceiveActor, IWithTimers
{
    private sealed record Check;

    private readonly AdmissionGuard _guard;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(TimeSpan grace) => Akka.Actor.Props.Create(() => new AdmissionActor(grace));

    public AdmissionActor(TimeSpan grace)
    {
        _guard = new AdmissionGuard(grace);
        Receive<ClusterEvent.CurrentClusterState>(state =>
        {
            foreach (var member in state.Members) Up(member);
        });
        Receive<ClusterEvent.MemberUp>(up => Up(up.Member));
        Receive<ClusterEvent.MemberWeaklyUp>(up => Up(up.Member));
        Receive<ClusterEvent.MemberRemoved>(removed => _guard.Removed(removed.Member.Address.ToString()));
        Receive<MemberProven>(proven => _guard.Proven(proven.Node.ToString()));
        Receive<Check>(_ => DownOverdue());
    }

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot,
            typeof(ClusterEvent.MemberUp), typeof(ClusterEvent.MemberWeaklyUp), typeof(ClusterEvent.MemberRemoved));
        Context.System.EventStream.Subscribe(Self, typeof(MemberProven));
        Timers.StartPeriodicTimer("check", new Check(), TimeSpan.FromSeconds(1));
    }

    protected override void PostStop()
    {
        _cluster.Unsubscribe(Self);
        Context.System.EventStream.Unsubscribe(Self);
    }

    private static long Now() => Environment.TickCount64;

    private void Up(Member member)
    {
        if (member.Address.Equals(_cluster.SelfAddress) || member.Status is not (MemberStatus.Up or MemberStatus.WeaklyUp)) return;
        _guard.Up(member.Address.ToString(), Now());
    }

    private void DownOverdue()
    {
        foreach (var address in _guard.Overdue(Now()))
        {
            var member = _cluster.State.Members.FirstOrDefault(m => m.Address.ToString() == address);
            if (member is null) continue;
            _log.Warning("downing cluster member {0} (roles {1}): it did not prove the job secret within {2:0} s of joining",
                address, string.Join(",", member.Roles), _guard.Grace.TotalSeconds);
            PretrainMetrics.Rejected("control", "unproven_member");
            _cluster.Down(member.Address);
        }
    }
}
