import Crypto
import Foundation

/// One file `migrations/NNNN_name.sql`.
public struct Migration: Sendable, Equatable {
    public var version: Int
    public var name: String
    public var sql: String
    /// SHA-256 of the file, hex: an applied migration whose file changes is refused.
    public var checksum: String

    /// `NNNN_name.sql`, as in the folder.
    public var fileName: String { String(format: "%04d", version) + "_\(name).sql" }

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
        self.checksum = SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The `migrations/` folder of the checkout this binary was built in (it lives under
    /// `.build/<platform>/<configuration>/`), whatever the working directory; else `./migrations`.
    public static func checkoutFolder(executable: URL? = Bundle.main.executableURL) -> URL {
        var folder = executable?.resolvingSymlinksInPath().deletingLastPathComponent()
        while let current = folder, current.path != "/" {
            let candidate = current.appending(path: "migrations", directoryHint: .isDirectory)
            if FileManager.default.fileExists(atPath: candidate.appending(path: "0001_coupons.sql").path) { return candidate }
            folder = current.deletingLastPathComponent()
        }
        return URL(filePath: "migrations", directoryHint: .isDirectory)
    }

    /// Loads every `NNNN_name.sql` of a folder, in version order.
    public static func load(from directory: URL) throws -> [Migration] {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw MigrationError.folderUnreadable(directory.path)
        }
        var migrations: [Migration] = []
        for file in files where file.hasSuffix(".sql") {
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]), version > 0 else {
                throw MigrationError.badFileName(file)
            }
            let sql = try String(contentsOf: directory.appending(path: file), encoding: .utf8)
            migrations.append(Migration(version: version, name: String(stem[stem.index(after: underscore)...]), sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (a, b) in zip(migrations, migrations.dropFirst()) where a.version == b.version {
            throw MigrationError.duplicateVersion(a.version)
        }
        return migrations
    }
}

public enum MigrationError: Error, CustomStringConvertible, Equatable {
    case folderUnreadable(String)
    case badFileName(String)
    case duplicateVersion(Int)
    case checksumChanged(version: Int, name: String, applied: String, file: String)
    case statementFailed(file: String, statement: Int, of: Int, message: String, sqlState: String?, sql: String)

    public var description: String {
        switch self {
        case .statementFailed(let file, let statement, let count, let message, let sqlState, let sql):
            "\(file), statement \(statement) of \(count): \(message)\(sqlState.map { " (SQLSTATE \($0))" } ?? "")\n"
                + sql.split(separator: "\n").prefix(3).map { "    " + $0 }.joined(separator: "\n")
        case .folderUnreadable(let path):
            "cannot read the migrations folder '\(path)' (set --migrations)"
        case .badFileName(let file):
            "migration file '\(file)' is not named NNNN_name.sql"
        case .duplicateVersion(let version):
            "two migration files have version \(version)"
        case .checksumChanged(let version, let name, let applied, let file):
            """
            migration \(version) (\(name)) was applied with checksum \(applied.prefix(12)) but its file now has \
            \(file.prefix(12)); applied migrations must not change: revert the file and add a new migration instead
            """
        }
    }
}
