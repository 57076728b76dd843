using System.CommandLine;
using Pretrain.Shared.Security;

namespace Pretrain.Cli.Commands;

/// <summary>
/// `pretrain certs`: a job CA and node certificates for mutual TLS on both planes. The work is
/// <see cref="JobCertificates"/>'s; this reads the options and prints what was written.
/// </summary>
static class CertsCommand
{
    const int DefaultDays = 365;

    public static Command Create()
    {
        var output = new Option<DirectoryInfo>("--out")
        {
            Description = "Folder for ca.crt, ca.key and each node's NAME.pfx, NAME.crt and NAME.key (created if need be; private keys 0600).",
            Required = true,
        };
        var nodes = new Option<string[]>("--node")
        {
            Description = "A node certificate: NAME, or NAME=HOST,HOST… with the DNS names and IP addresses it is for (default: NAME, localhost " +
                          "and 127.0.0.1). Repeat for more nodes. Default: `coordinator` and `worker` — one worker certificate shared by every " +
                          "worker suits a Kubernetes Secret mounted in each worker pod, whose IPs are not known in advance (peers are checked " +
                          "against the job CA, not by name).",
            Arity = ArgumentArity.OneOrMore,
        };
        var days = new Option<int>("--days")
        {
            Description = "Days the CA and the node certificates stay valid (a node certificate never outlives its CA).",
            DefaultValueFactory = _ => DefaultDays,
        }.InRange(1, 36500);
        var job = new Option<string>("--job") { Description = "Job name, in the CA's subject (\"CN=NAME job CA, O=pretrain\").", DefaultValueFactory = _ => "pretrain" };
        var force = new Option<bool>("--force") { Description = "Replace a CA already in --out: every certificate it issued stops being trusted." };
        var add = new Option<bool>("--add") { Description = "Keep the CA already in --out (its ca.crt and ca.key) and issue the --node certificates from it." };
        var command = new Command("certs",
            "Make a job CA and node certificates for TLS: every node presents its own and accepts a peer's only when the job CA issued it.")
        {
            output, nodes, days, job, force, add,
        };
        command.Validators.Add(r =>
        {
            if (r.GetValue(force) && r.GetValue(add)) r.AddError("give --force (a new CA) or --add (more nodes from the existing CA), not both.");
            if (r.GetValue(add) && r.GetValue(nodes) is not { Length: > 0 }) r.AddError("--add needs the --node certificates to issue.");
        });
        command.SetAction((parse, _) => CommandRunner.RunAsync(() =>
        {
            string directory = parse.GetRequiredValue(output).FullName;
            var requests = NodeRequests(parse.GetValue(nodes));
            var validity = TimeSpan.FromDays(parse.GetValue(days));
            IReadOnlyList<WrittenFile> written;
            if (parse.GetValue(add))
            {
                if (JobCertificates.ExistingAuthority(directory) == null)
                    throw new UserError($"--add: {directory} holds no job CA ({JobCertificates.AuthorityCertificateFile} and " +
                                        $"{JobCertificates.AuthorityKeyFile}); make one with `pretrain certs --out {directory}` first.");
                written = JobCertificates.AddNodes(directory, requests, validity);
            }
            else
            {
                if (!parse.GetValue(force) && JobCertificates.ExistingAuthority(directory) is { } existing)
                    throw new UserError($"--out: {existing} already exists: {directory} holds a job CA. Give --add to issue more node " +
                                        "certificates from it, or --force to replace it (every certificate it issued stops being trusted).");
                written = JobCertificates.IssueDirectory(directory, parse.GetValue(job)!, requests, validity, replaceAuthority: parse.GetValue(force));
            }
            int width = written.Select(f => Path.GetFileName(f.Path).Length).DefaultIfEmpty(0).Max();
            Console.WriteLine($"[pretrain] wrote {written.Count} files in {directory}:");
            foreach (var file in written)
                Console.WriteLine($"  {Path.GetFileName(file.Path).PadRight(width)}  {file.Description}");
            return Task.FromResult(0);
        }));
        return command;
    }

    /// <summary>NAME or NAME=HOST,HOST… per --node; none given: the coordinator's and one shared by the workers.</summary>
    static List<NodeRequest> NodeRequests(string[]? specs) =>
        specs is { Length: > 0 } ? [.. specs.Select(Parse)] : [Parse("coordinator"), Parse("worker")];

    static NodeRequest Parse(string spec)
    {
        int equals = spec.IndexOf('=');
        if (equals < 0) return new NodeRequest(spec, [spec, "localhost", "127.0.0.1"]);
        var hosts = spec[(equals + 1)..].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (hosts.Length == 0)
            throw new UserError($"--node {spec}: give the DNS names and IP addresses after '=', or NAME alone for NAME, localhost and 127.0.0.1.");
        return new NodeRequest(spec[..equals], hosts);
    }
}
