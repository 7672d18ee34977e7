use std::path::Path;

use domain::AttributeValue;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use ingest::{
    plants_from_id_raster, plants_from_polygons, Cube, PlantConfig, ReadConfig, Threshold,
};

use crate::write_envi_by_hand;

/// 10 lines x 12 samples, 1 m pixels from (500000, 4100000) in UTM 32N; plant A at lines 1-3,
/// samples 1-4 (NIR 0.6), plant B at lines 5-8, samples 6-10 (NIR 0.8); soil elsewhere.
fn field(dir: &Path) -> std::path::PathBuf {
    let extra = "data type = 4\nbyte order = 0\nwavelength units = nm\nwavelength = {670, 800}\nmap info = {UTM, 1, 1, 500000, 4100000, 1, 1, 32, North, WGS-84}\n";
    let a = |l: usize, s: usize| (1..=3).contains(&l) && (1..=4).contains(&s);
    let b = |l: usize, s: usize| (5..=8).contains(&l) && (6..=10).contains(&s);
    write_envi_by_hand(
        dir,
        "field",
        (10, 12, 2),
        "bsq",
        extra,
        |v| (v as f32).to_le_bytes().to_vec(),
        move |band, l, s| match (band, a(l, s), b(l, s)) {
            (0, true, _) | (0, _, true) => 0.05,
            (_, true, _) => 0.6,
            (_, _, true) => 0.8,
            (0, false, false) => 0.2,
            _ => 0.25,
        },
    )
}

fn rectangle(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<(f64, f64)> {
    vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
}

/// A GeoJSON file (old-style named CRS) of polygons with id, plot and genotype attributes.
/// (id, plot, vigour, ring) of one polygon.
type Plot<'a> = (i64, &'a str, f64, Vec<(f64, f64)>);

fn geojson(path: &Path, epsg: u32, polygons: &[Plot<'_>]) {
    let features: Vec<String> = polygons
        .iter()
        .map(|(id, plot, vigour, ring)| {
            let coords: Vec<String> = ring.iter().map(|(x, y)| format!("[{x:.9}, {y:.9}]")).collect();
            format!(
                r#"{{"type": "Feature", "properties": {{"id": {id}, "plot": "{plot}", "vigour": {vigour}}}, "geometry": {{"type": "Polygon", "coordinates": [[{}]]}}}}"#,
                coords.join(", ")
            )
        })
        .collect();
    let text = format!(
        r#"{{"type": "FeatureCollection", "crs": {{"type": "name", "properties": {{"name": "urn:ogc:def:crs:EPSG::{epsg}"}}}}, "features": [{}]}}"#,
        features.join(", ")
    );
    std::fs::write(path, text).unwrap();
}

fn config() -> PlantConfig {
    PlantConfig {
        threshold: Threshold::Fixed(0.5),
        opening_radius_px: 0,
        ..PlantConfig::default()
    }
}

#[test]
fn polygons_make_plants_and_carry_their_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let cube = Cube::open(&field(dir.path()), &ReadConfig::default()).unwrap();
    let (x0, y0) = (500_000.0, 4_100_000.0);
    let polygons = dir.path().join("plots.geojson");
    geojson(
        &polygons,
        32632,
        &[
            // Lines 0-4, samples 0-5: plant A (12 pixels).
            (101, "P1", 0.5, rectangle(x0, y0, x0 + 6.0, y0 - 5.0)),
            // Far away: skipped.
            (
                102,
                "P2",
                0.7,
                rectangle(x0 + 900.0, y0, x0 + 910.0, y0 - 5.0),
            ),
            // Lines 4-9, samples 5-11: plant B (20 pixels).
            (
                103,
                "P3",
                0.9,
                rectangle(x0 + 5.0, y0 - 4.0, x0 + 12.0, y0 - 10.0),
            ),
            // Soil only (line 9, samples 0-4): no plant.
            (104, "P4", 0.1, rectangle(x0, y0 - 9.0, x0 + 5.0, y0 - 10.0)),
        ],
    );
    let set = plants_from_polygons(&cube, &config(), &polygons).unwrap();
    let names: Vec<&str> = set.attributes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["id", "plot", "vigour"]);
    assert_eq!(set.plants.len(), 2);
    let (a, b) = (&set.plants[0], &set.plants[1]);
    assert_eq!((a.plant_id, a.pixel_count), (1, 12));
    assert_eq!((b.plant_id, b.pixel_count), (3, 20));
    assert_eq!(
        b.attributes,
        vec![
            AttributeValue::Integer(103),
            AttributeValue::Text("P3".into()),
            AttributeValue::Real(0.9)
        ]
    );
    assert!((b.mean_reflectance[1] - 0.8).abs() < 1e-6);
    // Centroid of B: line 6.5, sample 8 -> x = 500000 + 8.5, y = 4100000 - 7.
    assert_eq!(
        (b.centroid_x, b.centroid_y),
        (Some(x0 + 8.5), Some(y0 - 7.0))
    );

    // The same plot A in WGS 84 longitude/latitude: reprojected into the cube's CRS.
    let mut utm = SpatialRef::from_epsg(32632).unwrap();
    let mut wgs84 = SpatialRef::from_epsg(4326).unwrap();
    utm.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    wgs84.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let to_lonlat = CoordTransform::new(&utm, &wgs84).unwrap();
    let ring = rectangle(x0 + 0.5, y0 - 0.5, x0 + 5.5, y0 - 4.5);
    let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = ring.iter().copied().unzip();
    to_lonlat
        .transform_coords(&mut xs, &mut ys, &mut [])
        .unwrap();
    assert!(
        xs[0] > 8.0 && xs[0] < 10.0 && ys[0] > 30.0,
        "lon/lat {} {}",
        xs[0],
        ys[0]
    );
    let lonlat = dir.path().join("lonlat.geojson");
    geojson(
        &lonlat,
        4326,
        &[(7, "A", 1.0, xs.into_iter().zip(ys).collect())],
    );
    let set = plants_from_polygons(&cube, &config(), &lonlat).unwrap();
    assert_eq!(set.plants.len(), 1);
    assert_eq!(set.plants[0].pixel_count, 12);
    assert_eq!(
        set.plants[0].attributes[1],
        AttributeValue::Text("A".into())
    );

    // Every polygon outside the cube, and an unreadable file: one-line errors naming the file.
    let outside = dir.path().join("outside.geojson");
    geojson(
        &outside,
        32632,
        &[(1, "X", 0.0, rectangle(0.0, 0.0, 1.0, 1.0))],
    );
    let err = plants_from_polygons(&cube, &config(), &outside)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("outside.geojson") && err.contains("none of the 1 polygons overlaps"),
        "{err}"
    );
    let broken = dir.path().join("broken.geojson");
    std::fs::write(&broken, "{\"type\": \"FeatureCollection\", \"features\": [").unwrap();
    let err = plants_from_polygons(&cube, &config(), &broken)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken.geojson") && !err.contains('\n'),
        "{err}"
    );
}

#[test]
fn plant_id_raster_defines_plants() {
    let dir = tempfile::tempdir().unwrap();
    let cube = Cube::open(&field(dir.path()), &ReadConfig::default()).unwrap();
    // Plant 5: two separate squares (not connected), plant 9: one pixel.
    let id = |l: usize, s: usize| match (l, s) {
        (0..=1, 0..=1) | (8..=9, 10..=11) => 5.0,
        (4, 4) => 9.0,
        _ => 0.0,
    };
    let ids = write_envi_by_hand(
        dir.path(),
        "ids",
        (10, 12, 1),
        "bsq",
        "data type = 2\nbyte order = 0\n",
        |v| (v as i16).to_le_bytes().to_vec(),
        |_, l, s| id(l, s),
    );
    let set = plants_from_id_raster(&cube, &ids).unwrap();
    let found: Vec<(u32, u64)> = set
        .plants
        .iter()
        .map(|p| (p.plant_id, p.pixel_count))
        .collect();
    assert_eq!(found, vec![(5, 8), (9, 1)]);
    assert_eq!(set.plants[0].bbox.row_max, 9);
    let small = write_envi_by_hand(
        dir.path(),
        "small",
        (5, 12, 1),
        "bsq",
        "data type = 2\nbyte order = 0\n",
        |v| (v as i16).to_le_bytes().to_vec(),
        |_, _, _| 1.0,
    );
    let err = plants_from_id_raster(&cube, &small)
        .unwrap_err()
        .to_string();
    assert!(err.contains("small.img") && err.contains("5 x 12"), "{err}");
    let negative = write_envi_by_hand(
        dir.path(),
        "negative",
        (10, 12, 1),
        "bsq",
        "data type = 2\nbyte order = 0\n",
        |v| (v as i16).to_le_bytes().to_vec(),
        |_, l, _| if l == 3 { -1.0 } else { 0.0 },
    );
    let err = plants_from_id_raster(&cube, &negative)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 3") && err.contains("plant id -1"),
        "{err}"
    );
}
