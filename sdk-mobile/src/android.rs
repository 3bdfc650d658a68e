//! Android only: the one-time hand-over of the JVM and the app's `Context` to
//! the platform certificate verifier, which asks Android's trust manager about
//! every server certificate through JNI. `MkondoAndroid.init(context)` in the
//! Kotlin package calls [`native_init`] once, before the first `Client` is made;
//! without it a TLS connect fails with `ConnectFailed` naming the missing
//! initialisation instead of trusting anything.

use jni::errors::ThrowRuntimeExAndDefault;
use jni::jni_mangle;
use jni::objects::{JClass, JObject};
use jni::EnvUnowned;

/// `io.mkondo.sdk.MkondoAndroid.nativeInit(Context)`: keeps the application
/// context and its class loader for the verifier. A failure is thrown to the
/// caller as a `RuntimeException`; calling it again is harmless.
#[jni_mangle("io.mkondo.sdk.MkondoAndroid")]
pub fn native_init<'caller>(
    mut unowned_env: EnvUnowned<'caller>,
    _class: JClass<'caller>,
    context: JObject<'caller>,
) {
    unowned_env
        .with_env(|env| rustls_platform_verifier::android::init_with_env(env, context))
        .resolve::<ThrowRuntimeExAndDefault>();
}
