//! SQL parameter lists: the [`Params`] trait that [`DbPool`](crate::DbPool)'s
//! methods take, the [`ToParam`] trait for one value, and the
//! [`params!`](crate::params!) macro for lists of mixed types.
//!
//! Every form below works at the call site without a type annotation:
//!
//! ```
//! use rust_edge_gateway_sdk::prelude::*;
//! use rust_edge_gateway_sdk::params::Params;
//!
//! fn values(p: impl Params) -> Vec<JsonValue> { p.into_values() }
//!
//! let name = String::from("Rex");
//! let names = vec![name.clone(), "Tom".to_string()];
//! assert_eq!(values(&["Rex", "available"]), vec![json!("Rex"), json!("available")]); // &[&str]
//! assert_eq!(values(&[name.as_str()]), vec![json!("Rex")]);
//! assert_eq!(values(&[&name]), vec![json!("Rex")]);                                   // &[&String]
//! assert_eq!(values(&names), vec![json!("Rex"), json!("Tom")]);                       // &Vec<String>
//! assert_eq!(values(&names[..]), vec![json!("Rex"), json!("Tom")]);                   // &[String]
//! assert_eq!(values(&[json!(7), json!("x")]), vec![json!(7), json!("x")]);            // &[JsonValue]
//! assert_eq!(values(&[7, 8]), vec![json!(7), json!(8)]);                              // integers
//! assert_eq!(values(&[]), Vec::<JsonValue>::new());                                   // nothing
//! assert_eq!(values([]), Vec::<JsonValue>::new());
//! assert_eq!(values(()), Vec::<JsonValue>::new());
//! assert_eq!(values(params![1, 2.5, true, "x", None, Some(3)]),
//!            vec![json!(1), json!(2.5), json!(true), json!("x"), JsonValue::Null, json!(3)]);
//! ```

use serde_json::Value;

/// One SQL parameter: how a Rust value is sent to the database.
///
/// Strings as text, integers and floats as numbers, `bool` as a boolean,
/// `None` as NULL, a [`JsonValue`](serde_json::Value) as itself (an array or
/// object is bound as its JSON text by the database service). A float that
/// is not finite (NaN, infinity) has no JSON form and is sent as NULL.
///
/// Implement it for a type of your own to pass that type directly:
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
/// use rust_edge_gateway_sdk::params::{Params, ToParam};
///
/// struct PetId(u32);
/// impl ToParam for PetId {
///     fn to_param(&self) -> JsonValue { json!(self.0) }
/// }
/// assert_eq!((&[PetId(4)]).into_values(), vec![json!(4)]);
/// ```
pub trait ToParam {
    /// The value as the JSON the gateway binds.
    fn to_param(&self) -> Value;

    /// Like [`to_param`](Self::to_param), taking the value (a
    /// [`JsonValue`](serde_json::Value) moves instead of being copied).
    fn into_param(self) -> Value
    where
        Self: Sized,
    {
        self.to_param()
    }
}

/// A list of SQL parameters, one per `?` placeholder, in order: what
/// [`DbPool::query`](crate::DbPool::query) and the other SQL methods take.
///
/// Implemented for references to slices, arrays and `Vec`s of any
/// [`ToParam`] type (`&[&str]`, `&[String]`, `&[JsonValue]`, `&[i64]`, ...),
/// for arrays and `Vec`s by value, for the empty `&[]`, `[]` and `()`, and
/// for the `Vec<JsonValue>` that [`params!`](crate::params!) builds from
/// values of mixed types. See the [module](self) for every form.
pub trait Params {
    /// The parameters as the JSON values sent with the statement.
    fn into_values(self) -> Vec<Value>;
}

macro_rules! to_param_via_from {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}

to_param_via_from!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, bool);

impl ToParam for f64 {
    fn to_param(&self) -> Value {
        serde_json::Number::from_f64(*self).map_or(Value::Null, Value::Number)
    }
}

impl ToParam for f32 {
    fn to_param(&self) -> Value {
        f64::from(*self).to_param()
    }
}

impl ToParam for str {
    fn to_param(&self) -> Value {
        Value::String(self.to_owned())
    }
}

impl ToParam for String {
    fn to_param(&self) -> Value {
        Value::String(self.clone())
    }
}

impl ToParam for Value {
    fn to_param(&self) -> Value {
        self.clone()
    }

    fn into_param(self) -> Value {
        self
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToParam::to_param)
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Value {
        (**self).to_param()
    }
}

impl<T: ToParam> Params for &[T] {
    fn into_values(self) -> Vec<Value> {
        self.iter().map(ToParam::to_param).collect()
    }
}

impl<T: ToParam> Params for &Vec<T> {
    fn into_values(self) -> Vec<Value> {
        self.as_slice().into_values()
    }
}

impl<T: ToParam> Params for Vec<T> {
    fn into_values(self) -> Vec<Value> {
        self.into_iter().map(ToParam::into_param).collect()
    }
}

impl Params for () {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}

// The empty array has its own impls with a fixed element type, and the
// generic ones start at one element: so `&[]` (whose element type nothing
// names) matches exactly one impl and needs no annotation.
impl Params for &[Value; 0] {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}

impl Params for [Value; 0] {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}

macro_rules! params_for_arrays {
    ($($n:literal)*) => {$(
        impl<T: ToParam> Params for &[T; $n] {
            fn into_values(self) -> Vec<Value> {
                self.as_slice().into_values()
            }
        }
        impl<T: ToParam> Params for [T; $n] {
            fn into_values(self) -> Vec<Value> {
                self.into_iter().map(ToParam::into_param).collect()
            }
        }
    )*};
}

params_for_arrays!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);

/// A parameter list of mixed types: `params![id, "available", 2.5, true, None]`.
///
/// Each value goes through [`ToParam`](crate::params::ToParam); a bare
/// `None` is NULL without naming its type. The result is a
/// `Vec<JsonValue>`, which is a [`Params`](crate::params::Params).
///
/// ```
/// use rust_edge_gateway_sdk::prelude::*;
///
/// fn add(db: &DbPool, name: &str, age: u32) -> Result<u64, HandlerError> {
///     db.execute(
///         "INSERT INTO pets (name, age, owner, weight) VALUES (?, ?, ?, ?)",
///         params![name, age, None, 4.5],
///     )
/// }
/// assert_eq!(params![1, "a", None, false], vec![json!(1), json!("a"), JsonValue::Null, json!(false)]);
/// assert!(params![].is_empty());
/// ```
#[macro_export]
macro_rules! params {
    () => {
        ::std::vec::Vec::<$crate::serde_json::Value>::new()
    };
    ($($rest:tt)+) => {
        $crate::__params_munch!([] $($rest)+)
    };
}

/// One value at a time for [`params!`], so that a bare `None` can be told
/// apart from an expression.
#[doc(hidden)]
#[macro_export]
macro_rules! __params_munch {
    ([$($done:expr),*]) => {
        ::std::vec![$($done),*]
    };
    ([$($done:expr),*] None $(, $($rest:tt)*)?) => {
        $crate::__params_munch!([$($done,)* $crate::serde_json::Value::Null] $($($rest)*)?)
    };
    ([$($done:expr),*] $value:expr $(, $($rest:tt)*)?) => {
        $crate::__params_munch!(
            [$($done,)* $crate::params::ToParam::to_param(&$value)] $($($rest)*)?
        )
    };
}
