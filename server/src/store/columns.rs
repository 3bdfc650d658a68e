//! How the store's columns become the model's types. Every record is read by
//! column name through `sqlx::FromRow` — derived on its type, or written out
//! where a record needs more than its columns — never by position.
//!
//! Every column is TEXT or BIGINT, the two types sqlx's `Any` driver decodes
//! alike on SQLite and PostgreSQL; the types here map them onto the model:
//! times ([`Millis`]), 0/1 flags ([`Flag`]), JSON objects kept as TEXT
//! ([`JsonText`]) and the TEXT enums ([`Kind`], [`Role`]). A value that does
//! not fit — an unknown role, JSON that does not parse, TEXT where a BIGINT
//! belongs, a number out of range — is a `sqlx::Error::ColumnDecode`, which the
//! store reports as `internal` (`From<sqlx::Error> for Error`): never a panic,
//! never a silent default.

use serde_json::Value;
use sqlx::any::{Any, AnyTypeInfo};
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Type};

use super::{Kind, Millis, Role};

type ValueRef<'r> = <Any as Database>::ValueRef<'r>;

/// Unix milliseconds, a BIGINT column.
impl Type<Any> for Millis {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Millis {
    fn decode(value: ValueRef<'r>) -> Result<Self, BoxDynError> {
        <i64 as Decode<'r, Any>>::decode(value).map(Millis)
    }
}

/// A 0/1 BIGINT column read as a `bool`: `#[sqlx(try_from = "Flag")]`.
pub struct Flag(bool);

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: ValueRef<'r>) -> Result<Self, BoxDynError> {
        <i64 as Decode<'r, Any>>::decode(value).map(|flag| Flag(flag != 0))
    }
}

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

/// A JSON array of strings kept in a TEXT column (an app's allowed origins):
/// `#[sqlx(try_from = "StringList")]`.
pub struct StringList(Vec<String>);

impl Type<Any> for StringList {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for StringList {
    fn decode(value: ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<'r, Any>>::decode(value)?;
        Ok(StringList(serde_json::from_str(&text)?))
    }
}

impl From<StringList> for Vec<String> {
    fn from(list: StringList) -> Vec<String> {
        list.0
    }
}

/// A JSON value kept in a TEXT column: `#[sqlx(try_from = "JsonText")]`.
pub struct JsonText(Value);

impl Type<Any> for JsonText {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for JsonText {
    fn decode(value: ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<'r, Any>>::decode(value)?;
        Ok(JsonText(serde_json::from_str(&text)?))
    }
}

impl From<JsonText> for Value {
    fn from(json: JsonText) -> Value {
        json.0
    }
}

/// A TEXT column holding one of an enum's names.
fn decode_name<T>(
    value: ValueRef<'_>,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, BoxDynError> {
    let name = <String as Decode<'_, Any>>::decode(value)?;
    parse(&name).ok_or_else(|| format!("unknown {what} {name:?}").into())
}

impl Type<Any> for Kind {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Kind {
    fn decode(value: ValueRef<'r>) -> Result<Self, BoxDynError> {
        decode_name(value, "conversation kind", Kind::parse)
    }
}

impl Type<Any> for Role {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }
    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Role {
    fn decode(value: ValueRef<'r>) -> Result<Self, BoxDynError> {
        decode_name(value, "role", Role::parse)
    }
}
