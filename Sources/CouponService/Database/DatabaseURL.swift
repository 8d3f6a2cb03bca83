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

    init(_ text: String) throws {
        guard let url = URLComponents(string: text), ["postgres", "postgresql"].contains(url.scheme ?? ""),
            let host = url.host, !host.isEmpty
        else {
            throw ConfigurationError("the database URL must look like postgres://user:password@host:port/database")
        }
        let database = url.path.hasPrefix("/") ? String(url.path.dropFirst()) : url.path
        let mode = url.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        guard let sslMode = SSLMode(rawValue: mode) else {
            throw ConfigurationError(
                "unknown sslmode '\(mode)' in the database URL (\(SSLMode.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.sslMode = sslMode
        self.sslRootCert = url.queryItems?.first { $0.name == "sslrootcert" }?.value
        self.host = host
        self.port = url.port ?? 5432
        self.username = url.user?.removingPercentEncoding ?? "postgres"
        self.password = url.password?.removingPercentEncoding
        self.database = database.isEmpty ? nil : database
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

/// A setting the server cannot start with.
struct ConfigurationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
