use serde::{Deserialize, Serialize};

use crate::Error;

/// One class of a label raster or model: its integer code in label rasters and its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassInfo {
    pub code: u32,
    pub name: String,
}

/// The classes a model predicts, in the order of its outputs. Codes may be sparse (1, 10-14);
/// code 0 means unlabelled and is never a class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassSet {
    classes: Vec<ClassInfo>,
}

impl ClassSet {
    pub fn new(classes: Vec<ClassInfo>) -> Result<Self, Error> {
        if classes.is_empty() {
            return Err(Error::InvalidClasses("no classes".into()));
        }
        for (i, class) in classes.iter().enumerate() {
            if class.code == 0 {
                return Err(Error::InvalidClasses(format!(
                    "class '{}' has code 0, which means unlabelled",
                    class.name
                )));
            }
            if class.name.is_empty() {
                return Err(Error::InvalidClasses(format!(
                    "class {} has no name",
                    class.code
                )));
            }
            if let Some(other) = classes[..i]
                .iter()
                .find(|c| c.code == class.code || c.name == class.name)
            {
                return Err(Error::InvalidClasses(format!(
                    "classes {} '{}' and {} '{}' repeat a code or name",
                    other.code, other.name, class.code, class.name
                )));
            }
        }
        Ok(Self { classes })
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ClassInfo> {
        self.classes.iter()
    }

    pub fn get(&self, index: usize) -> Option<&ClassInfo> {
        self.classes.get(index)
    }

    /// Output index of a label code.
    pub fn index_of_code(&self, code: u32) -> Option<usize> {
        self.classes.iter().position(|c| c.code == code)
    }

    pub fn names(&self) -> Vec<&str> {
        self.classes.iter().map(|c| c.name.as_str()).collect()
    }

    /// Display colour (RGB) of the class at output `index`, the same in maps, quicklooks and
    /// reports: healthy green, rust orange, blight dark red; other names from a fixed palette.
    pub fn colour(&self, index: usize) -> [u8; 3] {
        const PALETTE: [[u8; 3]; 8] = [
            [31, 119, 180],
            [148, 103, 189],
            [23, 190, 207],
            [188, 189, 34],
            [227, 119, 194],
            [127, 127, 127],
            [140, 86, 75],
            [255, 187, 120],
        ];
        let name = self.classes.get(index).map(|c| c.name.to_lowercase());
        match name.as_deref() {
            Some("healthy") => [46, 160, 44],
            Some("rust") => [255, 127, 14],
            Some("blight") => [163, 29, 29],
            _ => PALETTE[index % PALETTE.len()],
        }
    }

    /// Output index of the class named `healthy` (any case), when there is one: disease incidence
    /// counts every other class.
    pub fn healthy_index(&self) -> Option<usize> {
        self.classes
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case("healthy"))
    }
}
