//! TEMPORARY stand-in until the policy branch merges (Access and AgentAccess only).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    None,
    Read,
    Ask,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::None => "none",
            Access::Read => "read",
            Access::Ask => "ask",
            Access::Write => "write",
        }
    }
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "none" => Some(Access::None),
            "read" => Some(Access::Read),
            "ask" => Some(Access::Ask),
            "write" => Some(Access::Write),
            _ => None,
        }
    }
}

impl ToSql for Access {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Access {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        Access::parse(text).ok_or_else(|| FromSqlError::Other(format!("unknown {text:?}").into()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct AgentAccess {
    pub client: String,
    pub resource: String,
    pub access: Access,
}
