namespace Pretrain.Shared.Security;

/// <summary>
/// A certificate or key the user gave (or asked for) cannot be used: a missing or unreadable file, one that holds
/// the wrong thing, a name that cannot become a file or a certificate subject, a CA that would be replaced. The
/// message names the file or the value, so the CLI prints it as one line and exits 2, like a recipe error.
/// </summary>
public sealed class CertificateException(string message, Exception? inner = null) : Exception(message, inner);
