import Foundation
import NIOSSL
import PostgresNIO

/// `postgres://user:password@host:port/database?sslmode=...&sslrootcert=...`, read once and turned into
/// a pool configuration or, for the listener, a single connection's.
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

    var host: String
    var port: Int
    var username: String
    var password: String?
    var database: String?
    var sslMode: SSLMode
    var sslRootCert: String?

    /// The query parameters read; any other is refused rather than silently ignored (`ssl=true` is
    /// not how libpq asks for TLS).
    static let parameters: Set = ["sslmode", "sslrootcert"]

    init(_ text: String) throws {
        let form = "the database URL must look like postgres://user:password@host:port/database"
        // Foundation takes a bare '%' as a literal one; libpq refuses it, and so does this.
        guard Self.percentDecoded(text) != nil else {
            throw ConfigurationError("the database URL has a '%' that is not %XX: \(form)")
        }
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? ""),
            let host = url.host, !host.isEmpty
        else { throw ConfigurationError(form) }
        // Each part percent-decoded once, from the text as written: "%2541" is the password "%41".
        func decoded(_ part: String?, _ name: String) throws -> String? {
            guard let part else { return nil }
            guard let text = Self.percentDecoded(part) else {
                throw ConfigurationError("the database URL's \(name) has a '%' that is not %XX: \(form)")
            }
            return text
        }
        var query: [String: String] = [:]
        for item in url.queryItems ?? [] {
            guard Self.parameters.contains(item.name) else {
                throw ConfigurationError(
                    "unknown parameter '\(item.name)' in the database URL (known: \(Self.parameters.sorted().joined(separator: ", ")))")
            }
            guard query.updateValue(item.value ?? "", forKey: item.name) == nil else {
                throw ConfigurationError("the database URL names '\(item.name)' twice")
            }
        }
        // libpq's default: TLS when the server offers it.
        let mode = query["sslmode"] ?? SSLMode.prefer.rawValue
        guard let sslMode = SSLMode(rawValue: mode) else {
            throw ConfigurationError(
                "unknown sslmode '\(mode)' in the database URL (\(SSLMode.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.sslMode = sslMode
        self.sslRootCert = query["sslrootcert"]
        self.host = host
        self.port = url.port ?? 5432
        self.username = try decoded(url.percentEncodedUser, "user") ?? "postgres"
        self.password = try decoded(url.percentEncodedPassword, "password")
        let database = try decoded(url.percentEncodedPath, "database name") ?? ""
        self.database = database.hasPrefix("/") ? String(database.dropFirst()).nilIfEmpty : database.nilIfEmpty
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

    /// The same database, user and TLS settings on another server (a Citus worker, say).
    func on(host: String, port: Int) -> DatabaseURL {
        var other = self
        other.host = host
        other.port = port
        return other
    }

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

    /// For the pool; `applicationName` shows in `pg_stat_activity`.
    func clientConfiguration(applicationName: String = "coupon-server") -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS =
            switch tlsConfiguration {
            case nil: .disable
            case let tls? where plainTextAllowed: .prefer(tls)
            case let tls?: .require(tls)
            }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: tls)
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
            host: host, port: port, username: username, password: password, database: database, tls: tls)
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }
}

private extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

/// A setting the server cannot start with.
struct ConfigurationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
