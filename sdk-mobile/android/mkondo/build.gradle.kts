// `io.mkondo.sdk`: the generated Kotlin bindings (src/main/kotlin) over
// libmkondo_mobile.so for each ABI (src/main/jniLibs/<abi>/), both produced by
// the cargo-ndk steps in sdk-mobile/README.md.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

repositories {
    // The Kotlin half of rustls-platform-verifier, which checks server
    // certificates with Android's trust manager (MkondoAndroid.init).
    maven {
        url = uri("https://github.com/rustls/rustls-platform-verifier/raw/maven-archive/android-release-support/maven/")
    }
}

// The verifier's Kotlin half must be the version its Rust half was built with:
// read it from the workspace's Cargo.lock (rustls-platform-verifier-android).
abstract class RustlsVersion : ValueSource<String, RustlsVersion.Params> {
    interface Params : ValueSourceParameters {
        val lockFile: RegularFileProperty
    }

    override fun obtain(): String {
        val lines = parameters.lockFile.get().asFile.readLines()
        val at = lines.indexOfFirst { it.trim() == "name = \"rustls-platform-verifier-android\"" }
        val version = if (at < 0) null else lines.drop(at + 1)
            .firstOrNull { it.trimStart().startsWith("version = ") }
            ?.substringAfter('"', "")
            ?.substringBefore('"', "")
            ?.takeIf { it.isNotEmpty() }
        return version ?: error("rustls-platform-verifier-android not found in Cargo.lock")
    }
}

val rustlsPlatformVerifierVersion = providers.of(RustlsVersion::class.java) {
    parameters.lockFile.set(layout.projectDirectory.file("../../../Cargo.lock"))
}

configurations.configureEach {
    resolutionStrategy.eachDependency {
        if (requested.group == "rustls" && requested.name == "rustls-platform-verifier") {
            useVersion(rustlsPlatformVerifierVersion.get())
            because("the Kotlin half must match the Rust half in Cargo.lock")
        }
    }
}

android {
    namespace = "io.mkondo.sdk"
    compileSdk = 34
    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }
    sourceSets["main"].jniLibs.srcDirs("src/main/jniLibs")
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    // The generated bindings load the library through JNA and await Rust futures
    // with coroutines.
    implementation("net.java.dev.jna:jna:5.14.0@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.8.1")
    // Android's certificate verifier, called from Rust through JNI; the
    // version is chosen above from Cargo.lock.
    implementation("rustls:rustls-platform-verifier")
}
