import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

extension Request {
    /// The credential of `Authorization: Bearer <credential>`: the scheme matched without regard to
    /// case (RFC 9110 section 11.1), then one or more spaces, then a `b64token` (RFC 6750 section
    /// 2.1: letters, digits, `-._~+/`, then `=` padding) and nothing else. Nil when there is none
    /// (so a combining mark after the scheme, which a Character-wise reading swallowed with the
    /// space, makes no credential).
    var bearerCredential: Substring? {
        guard let header = headers[.authorization] else { return nil }
        let bytes = header.utf8
        let scheme = "bearer".utf8
        guard bytes.starts(with: scheme, by: { $0 | 0x20 == $1 }) else { return nil }
        let afterScheme = bytes.dropFirst(scheme.count)
        let credential = afterScheme.drop(while: { $0 == UInt8(ascii: " ") })
        guard credential.startIndex > afterScheme.startIndex, Self.isB64Token(credential) else { return nil }
        return Substring(credential)
    }

    private static func isB64Token(_ bytes: Substring.UTF8View) -> Bool {
        let body = bytes.prefix(while: { $0 != UInt8(ascii: "=") })
        return !body.isEmpty && bytes.dropFirst(body.count).allSatisfy { $0 == UInt8(ascii: "=") } && body.allSatisfy {
            switch $0 {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                true
            default:
                false
            }
        }
    }
}

/// A shared secret given to the service (the admin token, the checkout's token), compared in
/// constant time.
struct SharedSecret: Sendable {
    /// Shorter secrets can be guessed; `scripts/run.sh` makes a random one.
    static let minimumBytes = 32

    private let bytes: [UInt8]

    init(_ text: String) throws(ConfigurationError) {
        guard text.utf8.count >= Self.minimumBytes else {
            throw ConfigurationError("a token must be at least \(Self.minimumBytes) bytes long")
        }
        bytes = Array(text.utf8)
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess was right.
    func matches(_ credential: Substring) -> Bool {
        let given = Array(credential.utf8)
        guard given.count == bytes.count else { return false }
        return zip(given, bytes).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// Where a service's bearer token comes from: given once (a flag or the environment), or a file that
/// is re-read every second.
public enum TokenSource: Sendable, Equatable {
    case given(String)
    /// One or two tokens, one per line, both valid: a rotation adds the new one, moves the callers,
    /// then removes the old, with no restart.
    case file(String)
}

/// A service's bearer tokens (the admin's, the checkout's, the events reader's), as a `TokenSource`
/// gives them. A file is read at the build (a file that does not read, or holds no token or more than
/// two, stops the service there) and then every second; a later read that fails keeps the tokens
/// before it, as the JWKS file does.
final class ServiceTokens: Service, Sendable {
    /// Most tokens a file may hold: the old and the new of a rotation.
    static let mostTokens = 2

    let name: String
    private let file: String?
    private let logger: Logger
    private let state: Mutex<(text: String, secrets: [SharedSecret])>

    init(_ source: TokenSource, name: String, logger: Logger) throws(ConfigurationError) {
        self.name = name
        self.logger = logger
        switch source {
        case .given(let token):
            file = nil
            state = Mutex((token, [try SharedSecret(token)]))
        case .file(let path):
            file = path
            let text = try Self.read(path, name: name)
            state = Mutex((text, try Self.secrets(in: text, name: name)))
        }
    }

    /// Any of the tokens, each compared in constant time.
    func matches(_ credential: Substring) -> Bool {
        state.withLock { $0.secrets }.reduce(false) { $1.matches(credential) || $0 }
    }

    var count: Int { state.withLock { $0.secrets.count } }

    /// Re-reads the file every second until the service stops; a given token has nothing to do.
    func run() async throws {
        guard file != nil else {
            try? await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                self.reloadIfChanged()
            }
        }
    }

    /// Reads the file again; when its text changed, its tokens replace the old ones. True when they did.
    @discardableResult
    func reloadIfChanged() -> Bool {
        guard let file else { return false }
        do {
            let text = try Self.read(file, name: name)
            guard state.withLock({ $0.text != text }) else { return false }
            let secrets = try Self.secrets(in: text, name: name)
            state.withLock { $0 = (text, secrets) }
            logger.notice("\(name) file reloaded", metadata: ["file": "\(file)", "tokens": "\(secrets.count)"])
            return true
        } catch {
            logger.error("\(name) file does not read; keeping the tokens before it", metadata: ["file": "\(file)", "error": "\(error)"])
            return false
        }
    }

    /// The tokens of a file: its lines that are not blank, surrounding spaces dropped.
    static func secrets(in text: String, name: String) throws(ConfigurationError) -> [SharedSecret] {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard (1...mostTokens).contains(lines.count) else {
            throw ConfigurationError("the \(name) file must hold one or two tokens, one per line; it holds \(lines.count)")
        }
        var secrets: [SharedSecret] = []
        for line in lines { secrets.append(try SharedSecret(line)) }
        return secrets
    }

    private static func read(_ file: String, name: String) throws(ConfigurationError) -> String {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ConfigurationError("cannot read the \(name) file \(file)")
        }
        return text
    }
}
