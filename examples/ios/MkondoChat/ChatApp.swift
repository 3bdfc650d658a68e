// A one-conversation chat app: the list, who is typing, and a composer.
import Mkondo
import SwiftUI

@main
struct ChatApp: App {
    @Environment(\.scenePhase) private var scenePhase
    @StateObject private var model = try! ChatModel(
        serverURL: "http://localhost:8080",
        tokenEndpoint: URL(string: "http://localhost:3000/token")!,
        conversationId: "launch-team"
    )

    var body: some Scene {
        WindowGroup { ChatScreen(model: model) }
            .onChange(of: scenePhase) { _, phase in model.scenePhaseChanged(phase) }
    }
}

struct ChatScreen: View {
    @ObservedObject var model: ChatModel

    var body: some View {
        VStack(spacing: 0) {
            if model.state != .connected {
                Text(model.state == .connecting ? "Connecting…" : "Offline")
                    .font(.footnote).frame(maxWidth: .infinity).background(.yellow)
            }
            List(model.messages, id: \.seq) { m in
                VStack(alignment: .leading) {
                    Text(m.senderId).font(.caption).foregroundStyle(.secondary)
                    Text(m.deletedAtMs == nil ? m.text : "message deleted")
                }
            }
            if !model.typing.isEmpty {
                Text("\(model.typing.joined(separator: ", ")) typing…").font(.caption)
            }
            HStack {
                TextField("Message", text: $model.draft)
                    .onChange(of: model.draft) { model.draftChanged() }
                Button("Send", action: model.send).disabled(model.draft.isEmpty)
            }
            .padding()
        }
    }
}
