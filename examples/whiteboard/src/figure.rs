//! Scripted figures for the headless client: lists of lines, each a list of points.

use crate::board::Point;

/// The figures the headless client can draw.
pub const NAMES: [&str; 3] = ["square", "circle", "zigzag"];

/// The lines of figure `name`, moved by `offset`; `None` for an unknown name.
pub fn figure(name: &str, offset: Point) -> Option<Vec<Vec<Point>>> {
    let at = |x: i32, y: i32| [x + offset[0], y + offset[1]];
    Some(match name {
        "square" => {
            let mut l = Vec::new();
            for (x0, y0, dx, dy) in [
                (0, 0, 1, 0),
                (100, 0, 0, 1),
                (100, 100, -1, 0),
                (0, 100, 0, -1),
            ] {
                for i in 0..20 {
                    l.push(at(x0 + dx * i * 5, y0 + dy * i * 5));
                }
            }
            l.push(at(0, 0));
            vec![l]
        }
        "circle" => {
            let l = (0..=72)
                .map(|i| {
                    let a = i as f64 * std::f64::consts::TAU / 72.0;
                    at(60 + (60.0 * a.cos()) as i32, 60 + (60.0 * a.sin()) as i32)
                })
                .collect();
            vec![l]
        }
        "zigzag" => vec![
            (0..12)
                .map(|i| at(i * 12, if i % 2 == 0 { 0 } else { 40 }))
                .collect(),
            (0..12)
                .map(|i| at(i * 12, if i % 2 == 0 { 60 } else { 100 }))
                .collect(),
        ],
        _ => return None,
    })
}
