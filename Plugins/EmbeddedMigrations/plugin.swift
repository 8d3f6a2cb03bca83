import Foundation
import PackagePlugin

/// Builds the package's migrations/ folder into the target it is applied to (`Migration.embeddedFiles`),
/// so the binary carries them; rebuilt whenever a file there changes.
@main
struct EmbeddedMigrations: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let folder = context.package.directoryURL.appending(path: "migrations", directoryHint: .isDirectory)
        var inputs: [URL] = []
        for subfolder in ["", "functions/"] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.appending(path: subfolder).path)) ?? []
            inputs += names.filter { $0.hasSuffix(".sql") }.sorted().map { folder.appending(path: subfolder + $0) }
        }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedMigrations.swift")
        return [
            .buildCommand(
                displayName: "Embedding migrations/ (\(inputs.count) files)",
                executable: try context.tool(named: "EmbedMigrations").url,
                arguments: [folder.path, output.path],
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
