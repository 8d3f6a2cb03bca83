import Foundation
import NIOSSL
import PostgresNIO

/// `postgres://user:password@host:port,host2:port2/database?sslmode=...&target_session_attrs=...`, as
/// libpq reads it, read once and turned into a pool configuration or, for the listener, a single
/// connection's, for one of its hosts.
///
/// Several hosts are tried in order (`PrimaryDatabase`) for the first one `target_session_attrs`
/// accepts: `any` (libpq's default: the first that answers), `read-write` (one that accepts writes:
/// `transaction_read_only` off) or `primary` (not in recovery).
///
/// `sslmode` means what it means to libpq: `disable` no TLS; `allow` and `prefer` TLS when the server
/// offers it, `require` always, all three without checking the certificate; `verify-ca` checks that
/// a trusted CA signed it, `verify-full` also that it names the host. `sslrootcert` names the PEM file
/// of the CA to trust (a private CA, as managed databases use); without it, the system's roots. As in
/// libpq, `require` with an `sslrootcert` checks the chain like `verify-ca`.
struct DatabaseURL: Sendable {
    enum SSLMode: String, Sendable, CaseIterable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    /// What a host must be to be used (libpq's `target_session_attrs`; its `read-only`, `standby`
    /// and `prefer-standby` have no use for a service that writes).
    enum TargetSessionAttrs: String, Sendable, CaseIterable {
        case any
        case readWrite = "read-write"
        case primary
    }

    struct Host: Sendable, Equatable, CustomStringConvertible {
        var name: String
        var port: Int
        var description: String { name.contains(":") ? "[\(name)]:\(port)" : "\(name):\(port)" }
    }

    var hosts: [Host]
    var username: String
    var password: String?
    var database: String?
    var sslMode: SSLMode
    var sslRootCert: String?
    var targetSessionAttrs: TargetSessionAttrs

    /// The query parameters read; any other is refused rather than silently ignored (`ssl=true` is
    /// not how libpq asks for TLS).
    static let parameters: Set = ["sslmode", "sslrootcert", "target_session_attrs"]

    init(_ text: String) throws {
        let form = "the database URL must look like postgres://user:password@host:port[,host:port...]/database"
        // A bare '%' is refused, as libpq refuses it.
        guard Self.percentDecoded(text) != nil else {
            throw ConfigurationError("the database URL has a '%' that is not %XX: \(form)")
        }
        guard let schemeEnd = text.range(of: "://"), ["postgres", "postgresql"].contains(text[..<schemeEnd.lowerBound]) else {
            throw ConfigurationError(form)
        }
        let rest = text[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        // Each part percent-decoded once, from the text as written: "%2541" is the password "%41".
        func decoded(_ part: Substring) -> String { Self.percentDecoded(String(part)) ?? "" }
        var user: String?
        if let at = authority.lastIndex(of: "@") {
            let info = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let colon = info.firstIndex(of: ":")
            user = decoded(info[..<(colon ?? info.endIndex)])
            password = colon.map { decoded(info[info.index(after: $0)...]) }
        }
        hosts = try authority.split(separator: ",", omittingEmptySubsequences: false).map { try Self.host($0, form: form) }
        username = user.flatMap { $0.isEmpty ? nil : $0 } ?? "postgres"

        var tail = rest[authorityEnd...]
        var queryText: Substring = ""
        if let mark = tail.firstIndex(of: "?") {
            queryText = tail[tail.index(after: mark)...]
            tail = tail[..<mark]
        }
        database = tail.isEmpty || tail == "/" ? nil : decoded(tail.dropFirst())

        var query: [String: String] = [:]
        for item in queryText.split(separator: "&") {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = decoded(pair[0])
            guard Self.parameters.contains(name) else {
                throw ConfigurationError(
                    "unknown parameter '\(name)' in the database URL (known: \(Self.parameters.sorted().joined(separator: ", ")))")
            }
            guard query.updateValue(pair.count > 1 ? decoded(pair[1]) : "", forKey: name) == nil else {
                throw ConfigurationError("the database URL names '\(name)' twice")
            }
        }
        // libpq's default: TLS when the server offers it.
        let mode = query["sslmode"] ?? SSLMode.prefer.rawValue
        guard let sslMode = SSLMode(rawValue: mode) else {
            throw ConfigurationError(
                "unknown sslmode '\(mode)' in the database URL (\(SSLMode.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.sslMode = sslMode
        sslRootCert = query["sslrootcert"]
        let attrs = query["target_session_attrs"] ?? TargetSessionAttrs.any.rawValue
        guard let targetSessionAttrs = TargetSessionAttrs(rawValue: attrs) else {
            throw ConfigurationError(
                "target_session_attrs '\(attrs)' in the database URL is not one this service can use "
                    + "(\(TargetSessionAttrs.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.targetSessionAttrs = targetSessionAttrs
    }

    /// `name`, `name:port`, `[v6]` or `[v6]:port`; the port 5432 when not given.
    private static func host(_ text: Substring, form: String) throws -> Host {
        var name = text
        var port: Substring?
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            name = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw ConfigurationError(form) }
                port = after.dropFirst()
            }
        } else if let colon = text.lastIndex(of: ":") {
            name = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        let number = port.map { $0.plainInteger(maxDigits: 5) } ?? 5432
        guard let name = percentDecoded(String(name)), !name.isEmpty, let number, (1...65535).contains(number) else {
            throw ConfigurationError("'\(text)' is not a host:port: \(form)")
        }
        return Host(name: name, port: Int(number))
    }

    /// `part` with each `%XX` turned into its byte, once; nil for a `%` without two hex digits or
    /// bytes that are not UTF-8 (Foundation's `removingPercentEncoding` keeps a bare `%` as it is).
    static func percentDecoded(_ part: String) -> String? {
        func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        let encoded = Array(part.utf8)
        var bytes: [UInt8] = []
        var index = 0
        while index < encoded.count {
            guard encoded[index] == UInt8(ascii: "%") else {
                bytes.append(encoded[index])
                index += 1
                continue
            }
            guard index + 2 < encoded.count, let high = hex(encoded[index + 1]), let low = hex(encoded[index + 2]) else { return nil }
            bytes.append(high << 4 | low)
            index += 3
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// The same database, user and TLS settings on one server: one of the hosts, or another (a Citus
    /// worker, say).
    func on(host: String, port: Int) -> DatabaseURL {
        var other = self
        other.hosts = [Host(name: host, port: port)]
        return other
    }

    func on(_ host: Host) -> DatabaseURL { on(host: host.name, port: host.port) }

    /// The TLS settings `sslmode` and `sslrootcert` ask for; nil for `disable`.
    var tlsConfiguration: TLSConfiguration? {
        guard sslMode != .disable else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let sslRootCert, sslRootCert != "system" { tls.trustRoots = .file(sslRootCert) }
        switch sslMode {
        case .disable, .allow, .prefer: tls.certificateVerification = .none
        case .require: tls.certificateVerification = sslRootCert == nil ? .none : .noHostnameVerification
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        return tls
    }

    /// Whether a server that offers no TLS is still used.
    private var plainTextAllowed: Bool { sslMode == .allow || sslMode == .prefer }

    /// For the pool, on the first host (`on(_:)` picks another); `applicationName` shows in `pg_stat_activity`.
    func clientConfiguration(applicationName: String = "coupon-server") -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch tlsConfiguration {
            case nil: .disable
            case let tls? where plainTextAllowed: .prefer(tls)
            case let tls?: .require(tls)
            }
        var configuration = PostgresClient.Configuration(
            host: hosts[0].name, port: hosts[0].port, username: username, password: password, database: database, tls: tls)
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }

    /// For one dedicated connection, such as the listener's.
    func connectionConfiguration(applicationName: String) throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS =
            switch tlsConfiguration {
            case nil: .disable
            case let tls? where plainTextAllowed: .prefer(try NIOSSLContext(configuration: tls))
            case let tls?: .require(try NIOSSLContext(configuration: tls))
            }
        var configuration = PostgresConnection.Configuration(
            host: hosts[0].name, port: hosts[0].port, username: username, password: password, database: database, tls: tls)
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }
}

/// A setting the server cannot start with.
struct ConfigurationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
