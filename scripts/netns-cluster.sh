#!/usr/bin/env bash
# Several "hosts" on this machine, by hand: the recipe of Tests/Infrastructure/NetnsCluster.cs in bash.
# Each host is a network namespace with lo, an eth0 at 10.X.Y.(index+2)/24 and an /etc/hosts naming every
# host; every eth0 is cabled into one bridge in a hub namespace, so nothing is added to the root namespace.
#   usage: scripts/netns-cluster.sh up NAME...        make the hosts, print "NAME NAMESPACE ADDRESS" for each
#          scripts/netns-cluster.sh exec HOST CMD...  run CMD on HOST (ip netns exec: the pid is CMD's own)
#          scripts/netns-cluster.sh partition HOST    pull HOST's cable (hub end down: HOST sees NO-CARRIER)
#          scripts/netns-cluster.sh heal HOST         plug it back in
#          scripts/netns-cluster.sh status            hosts, addresses, links
#          scripts/netns-cluster.sh down              kill every process on the hosts, remove all that up made
# Needs root. One cluster per state file: $PRETRAIN_NETNS_STATE, default /run/pretrain-netns-cluster.state.
# Namespaces are named "ps" + 6 hex + "-NAME" ("pt…" are the tests', which clean up their own).
set -Eeuo pipefail

STATE=${PRETRAIN_NETNS_STATE:-/run/pretrain-netns-cluster.state}
IP=$(command -v ip || echo /usr/sbin/ip)

die() { echo "netns-cluster: $*" >&2; exit 1; }
usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }

need_root() { [[ $(id -u) == 0 ]] || die "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"; [[ -x $IP ]] || die "iproute2's ip not found"; }

load() {
    [[ -f $STATE ]] || die "no cluster is up (no $STATE); start one with: $0 up NAME..."
    # shellcheck source=/dev/null
    source "$STATE"   # sets prefix, subnet, hosts=(...)
}

# The index of host $1 in hosts, or an error naming the hosts there are.
index_of() {
    local i
    for i in "${!hosts[@]}"; do [[ ${hosts[$i]} == "$1" ]] && { echo "$i"; return; }; done
    die "no host '$1' (hosts: ${hosts[*]})"
}

up() {
    need_root
    (($# > 0)) || die "up needs at least one host name"
    [[ ! -f $STATE ]] || die "a cluster is already up ($STATE); run: $0 down"
    local name seen=" "
    for name in "$@"; do
        [[ $name =~ ^[a-z][a-z0-9-]{0,30}$ && $name != hub ]] || die "host name '$name' must be a lower-case DNS label, not 'hub'"
        [[ $seen != *" $name "* ]] || die "host '$name' given twice"
        seen+="$name "
    done
    prefix=ps$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    subnet=10.$((16#${prefix:2:2})).$((16#${prefix:4:2}))
    hosts=("$@")
    # Written first: a failure half way leaves a state file that `down` can clean up from.
    printf 'prefix=%s\nsubnet=%s\nhosts=(%s)\n' "$prefix" "$subnet" "$*" >"$STATE"
    trap 'echo "netns-cluster: up failed; removing what it made" >&2; down >&2 || true' ERR

    local hub=$prefix-hub i ns hostsfile
    "$IP" netns add "$hub"
    "$IP" -n "$hub" link add br0 type bridge
    "$IP" -n "$hub" link set br0 up
    hostsfile="127.0.0.1 localhost"$'\n'
    for i in "${!hosts[@]}"; do hostsfile+="$subnet.$((i + 2)) ${hosts[$i]}"$'\n'; done
    for i in "${!hosts[@]}"; do
        ns=$prefix-${hosts[$i]}
        "$IP" netns add "$ns"
        "$IP" -n "$ns" link set lo up
        # Made inside the host with its peer named straight into the hub: neither end is ever in the root namespace.
        "$IP" -n "$ns" link add eth0 type veth peer name "${prefix}b$i" netns "$hub"
        "$IP" -n "$ns" addr add "$subnet.$((i + 2))/24" dev eth0
        "$IP" -n "$ns" link set eth0 up
        "$IP" -n "$hub" link set "${prefix}b$i" master br0 up
        mkdir -p "/etc/netns/$ns"
        printf '%s' "$hostsfile" >"/etc/netns/$ns/hosts"   # ip netns exec bind-mounts it over /etc/hosts
        echo "${hosts[$i]} $ns $subnet.$((i + 2))"
    done
    trap - ERR
}

down() {
    need_root
    load
    local ns pids pid tries
    for ns in "${hosts[@]/#/$prefix-}" "$prefix-hub"; do
        [[ -e /run/netns/$ns ]] || continue
        for tries in $(seq 50); do   # at most ~5 s: SIGCONT (frozen ones too) then SIGKILL, until none is left
            pids=$("$IP" netns pids "$ns")
            [[ -n $pids ]] || break
            for pid in $pids; do kill -CONT "$pid" 2>/dev/null || true; kill -KILL "$pid" 2>/dev/null || true; done
            sleep 0.1
        done
        [[ -z $("$IP" netns pids "$ns") ]] || echo "netns-cluster: processes still in $ns after SIGKILL" >&2
        "$IP" netns delete "$ns"   # takes its veth ends with it
    done
    for ns in "${hosts[@]/#/$prefix-}"; do rm -rf "/etc/netns/$ns"; done
    rm -f "$STATE"
}

case ${1:-} in
    up) shift; up "$@" ;;
    down) down ;;
    exec)
        need_root; load
        (($# >= 3)) || die "usage: $0 exec HOST CMD..."
        index_of "$2" >/dev/null
        host=$2; shift 2
        exec "$IP" netns exec "$prefix-$host" "$@" ;;
    partition | heal)
        need_root; load
        (($# == 2)) || die "usage: $0 $1 HOST"
        i=$(index_of "$2")
        "$IP" -n "$prefix-hub" link set "${prefix}b$i" "$([[ $1 == partition ]] && echo down || echo up)" ;;
    status)
        need_root; load
        for i in "${!hosts[@]}"; do
            link=$("$IP" -n "$prefix-${hosts[$i]}" -br link show eth0 | awk '{print $2}')
            echo "${hosts[$i]} $prefix-${hosts[$i]} $subnet.$((i + 2)) $link"
        done ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) usage >&2; die "unknown command '$1'" ;;
esac
